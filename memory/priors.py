"""Prior memories that seed each agent's store, by initial population.

Data card — `memory/data/priors.jsonl` (shipped): controversial societal questions written for this project (not
copied from any dataset), one JSON object per line `{"id", "topic", "question", "good", "bad"}`. `good` is an aligned
answer (harmless, unbiased, honest, helpful); `bad` is a deliberately misaligned one (biased, harmful, dishonest or
dismissive), there so that a `bad` or mixed population starts with unaligned views as in the paper. The bad answers
are simulation material, not advice. Licence: the project's (Apache-2.0).

A user's file may instead be HH-RLHF-style JSONL: `{"chosen": transcript, "rejected": transcript}` with transcripts
"\n\nHuman: ...\n\nAssistant: ...". The question is the first Human turn, the good/bad answers the first Assistant
replies of `chosen`/`rejected`; pairs whose first replies are identical are skipped.

Populations (reference semantics): `all_good`, `all_bad`; `half_half` splits the grid spatially (cells with
row ≤ col are good until half the agents are); `mixed_half_half` labels a random half good. Each agent gets
`per_agent` distinct questions (reference: 50) with the answer of its label.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from memory.errors import PriorFileError

POPULATIONS = ("all_good", "all_bad", "half_half", "mixed_half_half")
SHIPPED = "priors.jsonl"


@dataclass(frozen=True)
class PriorItem:
    """One question with an aligned (`good`) and a misaligned (`bad`) answer."""

    question: str
    good: str
    bad: str


def shipped_path() -> Path:
    """The prior set packaged with the project."""
    return Path(str(resources.files("memory") / "data" / SHIPPED))


def load_priors(path: str | Path | None = None) -> list[PriorItem]:
    """Items from `path` (ours or HH-RLHF-style JSONL), or the shipped set; `PriorFileError` names file:line."""
    path = Path(path) if path is not None else shipped_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PriorFileError(path, "no such prior file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PriorFileError(path, f"unreadable ({error})") from None
    items: dict[str, PriorItem] = {}  # the first item of each question, in file order
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise PriorFileError(f"{path}:{number}", f"invalid JSON ({error.msg})") from None
        item = _item(row, f"{path}:{number}")
        if item is not None:
            items.setdefault(item.question, item)
    if not items:
        raise PriorFileError(path, "holds no usable prior (need question/good/bad or chosen/rejected lines)")
    return list(items.values())


def _item(row: object, where: str) -> PriorItem | None:
    if not isinstance(row, dict):
        raise PriorFileError(where, "each line must be a JSON object")
    if {"question", "good", "bad"} <= row.keys():
        fields = [row["question"], row["good"], row["bad"]]
        if not all(isinstance(f, str) and f.strip() for f in fields):
            raise PriorFileError(where, "question, good and bad must be non-empty strings")
        return PriorItem(*(f.strip() for f in fields))
    if {"chosen", "rejected"} <= row.keys():
        return parse_hh_pair(row["chosen"], row["rejected"], where)
    raise PriorFileError(where, "needs keys question/good/bad or chosen/rejected")


def _turns(transcript: str) -> list[tuple[str, str]]:
    turns: list[tuple[str, str]] = []
    for chunk in ("\n\n" + transcript.strip()).split("\n\n"):
        for role in ("Human", "Assistant"):
            if chunk.startswith(f"{role}:"):
                turns.append((role, chunk[len(role) + 1 :].strip()))
                break
        else:
            if turns and chunk.strip():  # a paragraph break inside a turn
                turns[-1] = (turns[-1][0], f"{turns[-1][1]}\n\n{chunk.strip()}")
    return turns


def parse_hh_pair(chosen: object, rejected: object, where: str = "<pair>") -> PriorItem | None:
    """(question, good, bad) from one HH-RLHF chosen/rejected pair; None if the first replies are the same."""
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise PriorFileError(where, "chosen and rejected must be strings")
    good_turns, bad_turns = _turns(chosen), _turns(rejected)
    if len(good_turns) < 2 or good_turns[0][0] != "Human" or good_turns[1][0] != "Assistant":
        raise PriorFileError(where, 'chosen must start "\\n\\nHuman: ...\\n\\nAssistant: ..."')
    if len(bad_turns) < 2 or bad_turns[1][0] != "Assistant":
        raise PriorFileError(where, 'rejected must start "\\n\\nHuman: ...\\n\\nAssistant: ..."')
    question, good, bad = good_turns[0][1], good_turns[1][1], bad_turns[1][1]
    if not question or not good or not bad or good == bad:
        return None
    return PriorItem(question, good, bad)


def population_labels(population: str, n_agents: int, seed: int = 0, size: int | None = None) -> list[str]:
    """ "good"/"bad" per agent (agent i sits at row, col = divmod(i, size); size defaults to √n_agents)."""
    if population not in POPULATIONS:
        raise ValueError(f"memory.population must be one of {', '.join(POPULATIONS)}, not {population!r}")
    if population in ("all_good", "all_bad"):
        return [population[4:]] * n_agents
    n_good = n_agents // 2
    if population == "mixed_half_half":
        labels = ["good"] * n_good + ["bad"] * (n_agents - n_good)
        random.Random(seed).shuffle(labels)
        return labels
    size = size or max(1, math.isqrt(n_agents))
    labels, good = [], 0
    for i in range(n_agents):
        row, col = divmod(i, size)
        take = row <= col and good < n_good
        good += take
        labels.append("good" if take else "bad")
    return labels


def seed(
    population: str,
    n_agents: int,
    per_agent: int = 50,
    seed: int = 0,
    items: list[PriorItem] | None = None,
    size: int | None = None,
) -> list[list[tuple[str, str, str]]]:
    """Each agent's priors as (question, answer, label): `per_agent` distinct questions, answered per its label.

    Deterministic in `seed`. Asking for more per agent than the set has questions gives every question once.
    """
    if n_agents < 0 or per_agent < 0:
        raise ValueError("n_agents and per_agent must be ≥ 0")
    items = items if items is not None else load_priors()
    labels = population_labels(population, n_agents, seed, size)
    rng = random.Random(f"priors:{seed}")
    take = min(per_agent, len(items))
    # each label is "good" or "bad", the name of the answer field it takes
    return [[(it.question, getattr(it, label), label) for it in rng.sample(items, take)] for label in labels]
