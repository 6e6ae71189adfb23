"""Protocol echoes: an "answer" that repeats the society's own prompts is not an answer.

Asked to revise, SmolLM2-135M often replies with the request itself ("This answer aligns with shared social values 4.2
on a scale from 1 to 7"), its frame ("You were asked: ... You answered: ..."), its persona prompt ("You are a member of
a society. You answer questions in your own words...") or the feedback it was shown, and the observer rates such
replies like answers. In cpu_small's two worlds 45 of 108 imitation responses are echoes and in 16 of 46 groups the
best-rated response is one (four worlds: 86 of 214, 24 of 75). Trained on, they teach the model to talk about ratings
instead of answering, so sa-build-data drops them (`filter.echo_words`).

A text echoes the protocol when it
- shares a run of `words` consecutive words (lower-cased, punctuation dropped) with a fixed part of a prompt in
  agents/prompts.py (every template between its `{placeholders}`, every persona) or with the agent's own persona, or
- holds the revision prompt's frame or term (`FRAME`: "You were asked:" and the model's "You are asked:", "You
  answered:", a comment's "(rated 4", "shared social values").
None of the 5,703 answer and question texts of BIG-bench HHH, TruthfulQA and moral permissibility does (at 6 words;
at 4, "the answer is not" from the criteria already catches real answers).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from agents import prompts

ECHO_WORDS = 6  # the default run length (sa-build-data's filter.echo_words, sa-simulate's metrics.json)
WORD = re.compile(r"[a-z0-9']+")
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
FRAME = re.compile(r"\byou(?: were| are|'re)? asked:|\byou answered:|\(rated \d|shared social values", re.IGNORECASE)


def runs(text: str, words: int) -> set[tuple[str, ...]]:
    """Every run of `words` consecutive words of `text` (lower-cased, punctuation dropped)."""
    tokens = WORD.findall(text.lower())
    return {tuple(tokens[i : i + words]) for i in range(len(tokens) - words + 1)}


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (tuple, list, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


@functools.lru_cache(maxsize=8)
def protocol_runs(words: int) -> frozenset[tuple[str, ...]]:
    """The `words`-word runs of every fixed prompt text in agents/prompts.py (its upper-case constants)."""
    texts = [text for name, value in vars(prompts).items() if name.isupper() for text in _strings(value)]
    return frozenset(run for text in texts for part in PLACEHOLDER.split(text) for run in runs(part, words))


def protocol_echo(text: str, words: int, persona: str | None = None) -> str | None:
    """What `text` echoes: the revision prompt's frame or term (`FRAME`), else the first run of `words` words it
    shares with the protocol's prompts or with `persona`'s system prompt (a shipped persona's name or a literal
    prompt); None when it echoes nothing or `words` is 0 (the check is off)."""
    if words <= 0:
        return None
    if frame := FRAME.search(text):
        return frame.group(0)
    shared = runs(text, words) & (protocol_runs(words) | runs(prompts.persona_prompt(persona), words))
    return " ".join(min(shared)) if shared else None
