"""The episode store: append-only lines, resume keys, kill-safe tail recovery, corruption refused without writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conf.errors import UserError
from environment.episodes import EpisodeStore
from environment.records import SCHEMA_VERSION


def make_record(round_: int, agent: int, world: str = "w", rating: int | None = 5) -> dict[str, Any]:
    """A complete, valid episode record (DESIGN's required fields)."""
    scores = {"alignment": rating, "engagement": rating, "reasons": {}}
    return {
        "schema_version": SCHEMA_VERSION, "world_id": world, "round": round_, "agent_id": agent, "position": [0, agent],
        "agent_model": "m", "question_id": f"q{round_}-{agent}", "question": f"question {round_} {agent}?",
        "draft": {"text": "draft", "memory_hits": []},
        "feedback": [{"peer_id": 1, "peer_model": "m", "rating": rating, "reason": "r", "valid": rating is not None}],
        "revision": {"text": f"revision {round_} {agent}"}, "observer": {"draft": scores, "revision": scores},
        "usage": {"calls": 10, "prompt_tokens": 100, "completion_tokens": 50, "seconds": 1.0},
    }  # fmt: skip


def write_lines(path: Path, records: list[dict[str, Any]]) -> bytes:
    data = b"".join((json.dumps(r) + "\n").encode() for r in records)
    path.write_bytes(data)
    return data


def test_append_then_reopen_gives_the_same_records_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    store = EpisodeStore(path, fsync_every=2).open()
    for agent in range(3):
        store.append(make_record(0, agent))
    with pytest.raises(RuntimeError, match="already stored"):
        store.append(make_record(0, 1))
    store.close()
    assert len(path.read_bytes().splitlines()) == 3
    again = EpisodeStore(path).open()
    assert again.keys == {("w", 0, 0), ("w", 0, 1), ("w", 0, 2)}
    assert [r["agent_id"] for r in again.records] == [0, 1, 2]
    again.close()


def test_partial_trailing_line_is_moved_aside_and_complete_lines_kept(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    complete = write_lines(path, [make_record(0, 0), make_record(0, 1)])
    partial = json.dumps(make_record(0, 2)).encode()[:57]  # a write cut short by a kill
    path.write_bytes(complete + partial)
    store = EpisodeStore(path).open()
    assert len(store) == 2
    assert store.moved_aside is not None and store.moved_aside.read_bytes() == partial
    store.append(make_record(0, 2))
    store.close()
    lines = path.read_bytes().splitlines()
    assert path.read_bytes().startswith(complete) and len(lines) == 3
    assert json.loads(lines[-1])["agent_id"] == 2


def test_valid_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    data = write_lines(path, [make_record(0, 0), make_record(0, 1)])
    path.write_bytes(data[:-1])  # strip the final newline only
    store = EpisodeStore(path).open()
    assert len(store) == 2 and store.moved_aside is None
    store.close()
    assert path.read_bytes() == data


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        (b"{not json", "corrupt episode record"),
        (b'{"schema_version": 1, "world_id": "w"}', "missing field"),
        (json.dumps(make_record(0, 9, rating=8)).encode(), "neither null nor a number"),
        (json.dumps(make_record(0, 0)).encode(), "duplicate turn"),
    ],
)
def test_corrupt_file_is_refused_with_file_and_line_and_left_untouched(
    tmp_path: Path, bad_line: bytes, match: str
) -> None:
    path = tmp_path / "episodes.jsonl"
    data = write_lines(path, [make_record(0, 0), make_record(0, 1)])
    data = data + bad_line + b"\n" + (json.dumps(make_record(1, 0)) + "\n").encode()
    path.write_bytes(data)
    with pytest.raises(UserError, match=match) as info:
        EpisodeStore(path).open()
    assert f"{path}:3" in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == data
    assert not list(tmp_path.glob("*.partial-*"))
