"""The episode record: one complete Back-Scatter interaction, one JSON object per line of `episodes.jsonl`.

Pure standard library on purpose: training reads episodes through this module and never imports simulation code.
A rating is a real number in [1, 7] (an int from a generated reply, an expected value from token probabilities, or a
likelihood score mapped onto the scale) or null (unreadable / invalid); it is never coerced into a number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RATING_MIN, RATING_MAX = 1, 7

REQUIRED_FIELDS = (
    "schema_version", "world_id", "round", "agent_id", "position", "agent_model", "question_id", "question",
    "draft", "feedback", "revision", "observer", "usage",
)  # fmt: skip


class EpisodeFormatError(ValueError):
    """An episodes file line that is not a valid record (message names file and line)."""


def valid_rating(value: Any) -> int | float | None:
    """Return `value` if it is a number on the 1..7 scale (int or finite float), else None (bools are not ratings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if RATING_MIN <= value <= RATING_MAX else None  # NaN and ±inf fail the comparison


def validate_record(record: Any) -> dict[str, Any]:
    """Check a decoded record against the contract; return it or raise ValueError naming the problem."""
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
    if missing := [name for name in REQUIRED_FIELDS if name not in record]:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"schema_version {record['schema_version']!r} is not {SCHEMA_VERSION}")
    if not isinstance(record["round"], int) or not isinstance(record["agent_id"], int):
        raise ValueError("round and agent_id must be integers")
    if not isinstance(record["feedback"], list):
        raise ValueError("feedback must be a list")
    for item in record["feedback"]:
        if (rating := item.get("rating")) is not None and valid_rating(rating) is None:
            raise ValueError(f"feedback rating {rating!r} is neither null nor a number in 1..7")
    for stage in ("draft", "revision"):
        scores = record["observer"].get(stage) or {}
        for key in ("alignment", "engagement"):
            if (value := scores.get(key)) is not None and valid_rating(value) is None:
                raise ValueError(f"observer {stage}.{key} {value!r} is neither null nor a number in 1..7")
    return record


def record_key(record: dict[str, Any]) -> tuple[str, int, int]:
    """The identity of a turn: (world_id, round, agent_id). Resume skips keys already present."""
    return (str(record["world_id"]), int(record["round"]), int(record["agent_id"]))


def read_episodes(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield validated records from an `episodes.jsonl`; raise EpisodeFormatError naming file and line otherwise."""
    return (record for _, record in numbered_episodes(path))


def numbered_episodes(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """`read_episodes` with the line number of each record (lines split at b"\\n", counted from 1; blank ones
    hold no record)."""
    path = Path(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                record = validate_record(json.loads(line))
            except (ValueError, AttributeError, TypeError, RecursionError) as error:  # ValueError: bad UTF-8, JSON
                reason = "JSON nested too deeply" if isinstance(error, RecursionError) else error  # e.g. "[" * 3000
                raise EpisodeFormatError(f"{path}:{number}: not a valid episode record ({reason})") from None
            yield number, record
