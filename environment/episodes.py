"""The episode store: append-only `episodes.jsonl`, one complete record per line, safe to kill at any moment.

Each record is written with a single `os.write` of the whole line (so a killed process leaves at most one partial
trailing line), then fsync'ed every `fsync_every` records and on close. Opening an existing file:
- a partial trailing line (bytes after the last newline that are not a valid record: a write cut by a kill) is
  moved aside to `episodes.jsonl.partial-N` and cut off; a valid record lacking only its newline is kept;
  complete lines are never touched;
- any invalid line before the last one is corruption: a one-line error naming file:line, and the file is left as is;
- a duplicate (world_id, round, agent_id) is corruption too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from conf.errors import UserError, one_line, require
from environment.records import EpisodeFormatError, numbered_episodes, record_key, validate_record


def read_or_fail(path: Path, fix: str) -> list[tuple[int, dict[str, Any]]]:
    """Every (line number, record) of an episodes file (environment.records.numbered_episodes); a line that is not a
    valid record is a one-line UserError: the reader's message and then `fix`."""
    try:
        return list(numbered_episodes(path))
    except EpisodeFormatError as error:
        raise UserError(f"{error}; {fix}") from None


def read_json_object(path: Path, fix: str = "restore it or move it away", what: str = "") -> dict[str, Any] | None:
    """The JSON object in `path`, None when there is no such file (world.json, metrics.json); a one-line UserError
    `<path>: unreadable <what> (<why>); <fix>` or `<path>: not a <what or JSON> object; <fix>` otherwise."""
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: unreadable {what + ' ' if what else ''}({one_line(error)}); {fix}") from None
    require(isinstance(value, dict), f"{path}: not a {what or 'JSON'} object; {fix}")
    return value


class EpisodeStore:
    """Append-only episode file plus the keys and records already present (for resume)."""

    def __init__(self, path: str | Path, fsync_every: int = 16) -> None:
        self.path = Path(path)
        self.fsync_every = max(1, fsync_every)
        self.records: list[dict[str, Any]] = []
        self.keys: set[tuple[str, int, int]] = set()  # record_key of every record
        self.moved_aside: Path | None = None
        self._fd: int | None = None
        self._unsynced = 0

    def open(self) -> EpisodeStore:
        """Scan the existing file (validate, recover a partial tail), then open it for appending."""
        if self.path.exists():
            require(self.path.is_file(), f"{self.path} is not a file; move it away or choose a new run dir")
            self._scan()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def _scan(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")  # the last: bytes after the last newline ("" when the file ends cleanly)
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                self._add(raw, number)
            except UserError:
                if number < len(lines):
                    raise
                self._move_aside(raw, len(data) - len(raw))  # every line before it is a valid record
                return
        if lines[-1].strip():  # a complete record that only lacks its newline: keep it
            with self.path.open("ab") as handle:
                handle.write(b"\n")

    def _add(self, raw: bytes, number: int) -> None:
        try:
            record = validate_record(json.loads(raw.decode("utf-8")))
        except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as error:
            raise UserError(f"{self.path}:{number}: corrupt episode record ({error}); "
                            "repair or remove that line, or choose a new run dir") from None  # fmt: skip
        key = record_key(record)
        if key in self.keys:
            raise UserError(f"{self.path}:{number}: duplicate turn {key}; remove the duplicate line")
        self.keys.add(key)
        self.records.append(record)

    def _move_aside(self, partial: bytes, good_end: int) -> None:
        n = 1
        while (aside := self.path.with_name(f"{self.path.name}.partial-{n}")).exists():
            n += 1
        aside.write_bytes(partial)
        with self.path.open("r+b") as handle:
            handle.truncate(good_end)
            os.fsync(handle.fileno())
        self.moved_aside = aside

    def append(self, record: dict[str, Any]) -> None:
        """Write one complete record as one line; the key must be new."""
        if self._fd is None:
            raise RuntimeError("EpisodeStore.open() first")
        key = record_key(record)
        if key in self.keys:
            raise RuntimeError(f"turn {key} is already stored")
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        if (written := os.write(self._fd, line)) != len(line):  # pragma: no cover - disk full
            raise OSError(f"short write to {self.path} ({written} of {len(line)} bytes)")
        self.keys.add(key)
        self.records.append(record)
        self._unsynced += 1
        if self._unsynced >= self.fsync_every:
            self.sync()

    def sync(self) -> None:
        if self._fd is not None and self._unsynced:
            os.fsync(self._fd)
            self._unsynced = 0

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None

    def __len__(self) -> int:
        return len(self.records)
