"""Structured ratings read from a reply's text: the rater's own verdict, validated on the scale, or nothing.

A verdict is a JSON object with a `rating` (or `score`/`value`) key, or a `Rating: N` form. The parser is strict:
- text the rater was shown (the question, the answer under review, the prompt itself) is not its verdict: a verdict
  whose exact text appears in the prompt is ignored (an answer that says `{"rating": 7}` cannot rate itself), and so is
  one whose part up to the number does (`Rating: 7` echoed from the answer and completed with `/7`);
- a number that starts an enumeration or echoes the criteria (`Rating: 1. Harmless: ...`, `1) ... 2) ...`) is a list
  number, not a rating;
- `N/M` with M other than the scale's top (`5/10`) is a rating on another scale: invalid, never rescaled;
- the last verdict of the reply counts; a reply holding two different verdicts is unreadable.
An answer that never yields a valid rating is recorded as `value=None, valid=False` — never as a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agents.backends.base import ChatBackend, Message, Sampling, Usage
from agents.backends.errors import CallFailed
from agents.prompts import CRITERIA_NAMES, SCALE_HIGH, SCALE_LOW, reask_message


@dataclass(frozen=True)
class Rating:
    """One rating: `value` on the scale (an int from text, a float from probabilities or likelihoods) or None.

    `attempts`: answers read (1 + re-asks); `error`: why it is invalid; `mode`: the rater mode that produced it;
    `detail`: what the value was computed from (the distribution over the scale, a log-likelihood ratio, ...).
    """

    value: int | float | None
    reason: str
    valid: bool
    attempts: int = 1
    raw: str = ""
    error: str | None = None
    mode: str = "generate"
    detail: dict[str, Any] | None = None


def invalid(error: str, mode: str = "generate", attempts: int = 1, raw: str = "") -> Rating:
    """An unreadable rating (value None) with the reason why."""
    return Rating(None, "", False, attempts=attempts, raw=raw, error=error, mode=mode)


@dataclass(frozen=True)
class _Verdict:
    value: Any
    reason: str
    start: int
    end: int
    text: str  # the matched text (compared with the prompt)
    denominator: str | None = None
    core: str = ""  # the text up to the number (`Rating: 7` of `Rating: 7/7`), also compared with the prompt


_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_FORM = re.compile(
    r"rating\W{0,3}\s*[:=]\s*\**\s*(?P<value>[-+]?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(?P<den>\d+))?", re.IGNORECASE
)
_REASON = re.compile(r"reason\W{0,3}\s*[:=]\s*(?P<reason>.*)", re.IGNORECASE | re.DOTALL)
_LIST_MARK = re.compile(r"\s*[.)]\s*(?P<next>\S.{0,40})?", re.DOTALL)
_RATING_KEYS = ("rating", "score", "value")
_REASON_KEYS = ("reason", "explanation", "comment", "rationale")


def json_objects(text: str) -> Iterator[tuple[re.Match[str], dict[str, Any]]]:
    """Each flat `{...}` in a reply that parses as a JSON object, with its keys lower-cased (the rating's and the
    pairwise judge's verdicts)."""
    for match in _JSON_OBJECT.finditer(text):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            yield match, {str(k).lower(): v for k, v in data.items()}


def _json_verdicts(text: str) -> list[_Verdict]:
    found = []
    for match, data in json_objects(text):
        if key := next((k for k in _RATING_KEYS if k in data), None):
            reason = next((str(data[k]) for k in _REASON_KEYS if k in data), "")
            found.append(_Verdict(data[key], reason, match.start(), match.end(), match.group(0)))
    return found


def _is_list_number(text: str, verdict_end: int, value: str) -> bool:
    """True when the number just read starts an enumeration (`1. Harmless`, `1) ... 2)`) rather than rating."""
    mark = _LIST_MARK.match(text, verdict_end)
    if mark is None:
        return False
    following = (mark.group("next") or "").lower()
    if any(following.startswith(name) for name in CRITERIA_NAMES):
        return True
    try:
        successor = int(value) + 1
    except ValueError:
        return False
    return re.search(rf"(?:^|\s){successor}\s*[.)]\s", text[verdict_end:]) is not None


def _form_verdicts(text: str) -> list[_Verdict]:
    found = []
    for match in _FORM.finditer(text):
        if match.group("den") is None and _is_list_number(text, match.end(), match.group("value")):
            continue
        reason_match = _REASON.search(text, match.end())
        following = _FORM.search(text, match.end())
        stop = following.start() if following else len(text)
        if reason_match and reason_match.start() < stop:
            reason = reason_match.group("reason")[: stop - reason_match.start("reason")]
        else:
            reason = text[match.end() : stop].lstrip(" #*-:.\n")
        core = text[match.start() : match.end("value")]
        found.append(_Verdict(match.group("value"), reason.strip(), match.start(), match.end(), match.group(0),
                              match.group("den"), core))  # fmt: skip
    return found


def _to_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _value(verdict: _Verdict, low: int, high: int) -> tuple[int | None, str | None]:
    """The verdict's whole number on the scale, or (None, why not)."""
    raw = verdict.value
    if isinstance(raw, str) and "/" in raw:
        raw, _, verdict_den = raw.partition("/")
        verdict = replace(verdict, denominator=verdict_den.strip())
    if verdict.denominator is not None and _to_number(verdict.denominator) != high:
        return None, f"rating {verdict.value}/{verdict.denominator} is on another scale than {low}..{high}"
    value = _to_number(raw)
    if value is None:
        return None, f"rating {verdict.value!r} is not a whole number"
    if not low <= value <= high:
        return None, f"rating {value} is outside {low}..{high}"
    return value, None


def parse_rating(text: str, low: int = SCALE_LOW, high: int = SCALE_HIGH, shown: str = "") -> Rating:
    """Read the rater's own verdict from a reply; anything unreadable, ambiguous or off the scale is invalid.

    `shown`: the text of the prompt the rater saw; a verdict that repeats it verbatim is an echo and is ignored.
    """
    verdicts = sorted(_json_verdicts(text) + _form_verdicts(text), key=lambda v: v.start)
    verdicts = [v for v in verdicts if not (shown and (v.text in shown or (v.core and v.core in shown)))]
    verdicts = [v for i, v in enumerate(verdicts) if not any(o.start <= v.start < o.end for o in verdicts[:i])]
    if not verdicts:
        return invalid("no rating found", raw=text)
    values = [_value(v, low, high) for v in verdicts]
    readable = {value for value, _ in values if value is not None}
    if len(readable) > 1:
        return invalid(f"the reply holds different ratings {sorted(readable)}", raw=text)
    last = verdicts[-1]
    value, error = values[-1]
    if value is None:
        return Rating(None, last.reason.strip(), False, raw=text, error=error)
    return Rating(value, last.reason.strip().lstrip("*#:- ").strip(), True, raw=text)


def prompt_text(messages: Sequence[Message]) -> str:
    """Everything a rater was shown, for `parse_rating(shown=...)`."""
    return "\n".join(str(m.get("content", "")) for m in messages)


async def ask_rating(
    backend: ChatBackend, messages: Sequence[Message], sampling: Sampling, max_reasks: int = 2
) -> tuple[Rating, Usage]:
    """Ask for a rating; re-ask up to `max_reasks` times with the problem stated. A call that finally fails gives an
    invalid rating with `error` set (the usage meter has recorded the failure)."""
    conversation = list(messages)
    shown = prompt_text(messages)
    usage = Usage()
    rating = invalid("not asked", attempts=0)
    for attempt in range(1, max_reasks + 2):
        try:
            completion = await backend.chat(conversation, sampling)
        except CallFailed as error:
            return invalid(f"call failed: {error.cause}", attempts=attempt, raw=rating.raw), usage
        usage = usage + Usage.of(completion)
        rating = replace(parse_rating(completion.text, shown=shown), attempts=attempt)
        if rating.valid:
            return rating, usage
        conversation += [{"role": "assistant", "content": completion.text}, reask_message(rating.error or "")]
    return rating, usage
