"""Structured ratings: parse JSON or `Rating: N ### Reason: ...`, validate the range, re-ask a bounded number of times.

An answer that never yields a valid rating is recorded as `value=None, valid=False` — never as a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agents.backends.base import ChatBackend, Message, Sampling, Usage
from agents.backends.errors import CallFailed
from agents.prompts import SCALE_HIGH, SCALE_LOW, reask_message


@dataclass(frozen=True)
class Rating:
    """One rating. `attempts`: how many answers were read (1 + re-asks); `error`: why it is invalid."""

    value: int | None
    reason: str
    valid: bool
    attempts: int = 1
    raw: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_FORM = re.compile(r"rating\W{0,3}\s*[:=]\s*\**\s*(?P<value>[-+]?\d+(?:\.\d+)?)", re.IGNORECASE)
_REASON = re.compile(r"reason\W{0,3}\s*[:=]\s*(?P<reason>.*)", re.IGNORECASE | re.DOTALL)
_RATING_KEYS = ("rating", "score", "value")
_REASON_KEYS = ("reason", "explanation", "comment", "rationale")


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip().split("/")[0])
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _from_json(text: str) -> tuple[Any, str] | None:
    for match in _JSON_OBJECT.finditer(text):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        lower = {str(k).lower(): v for k, v in data.items()}
        for key in _RATING_KEYS:
            if key in lower:
                reason = next((str(lower[k]) for k in _REASON_KEYS if k in lower), "")
                return lower[key], reason
    return None


def _from_form(text: str) -> tuple[Any, str] | None:
    match = _FORM.search(text)
    if match is None:
        return None
    reason_match = _REASON.search(text, match.end())
    reason = reason_match.group("reason") if reason_match else text[match.end() :].lstrip(" #*-:\n")
    return match.group("value"), reason.strip()


def parse_rating(text: str, low: int = SCALE_LOW, high: int = SCALE_HIGH) -> Rating:
    """Read a rating from a reply; anything unreadable or out of range is invalid (value None)."""
    found = _from_json(text) or _from_form(text)
    if found is None:
        return Rating(None, "", False, raw=text, error="no rating found")
    raw_value, reason = found
    value = _to_int(raw_value)
    if value is None:
        return Rating(None, reason, False, raw=text, error=f"rating {raw_value!r} is not a whole number")
    if not low <= value <= high:
        return Rating(None, reason, False, raw=text, error=f"rating {value} is outside {low}..{high}")
    return Rating(value, reason.strip().lstrip("*#:- ").strip(), True, raw=text)


async def ask_rating(
    backend: ChatBackend, messages: Sequence[Message], sampling: Sampling, max_reasks: int = 2
) -> tuple[Rating, Usage]:
    """Ask for a rating; re-ask up to `max_reasks` times with the problem stated. A call that finally fails gives an
    invalid rating with `error` set (the usage meter has recorded the failure)."""
    conversation = list(messages)
    usage = Usage()
    rating = Rating(None, "", False, attempts=0, error="not asked")
    for attempt in range(1, max_reasks + 2):
        try:
            completion = await backend.chat(conversation, sampling)
        except CallFailed as error:
            return Rating(None, "", False, attempt, rating.raw, f"call failed: {error.cause}"), usage
        usage = usage + Usage.of(completion)
        rating = parse_rating(completion.text)
        rating = Rating(rating.value, rating.reason, rating.valid, attempt, rating.raw, rating.error)
        if rating.valid:
            return rating, usage
        conversation += [{"role": "assistant", "content": completion.text}, reask_message(rating.error or "")]
    return rating, usage
