"""The on-disk form of one store's state (`MemoryStore.state_dict`): `index.faiss`, `records.jsonl`, `meta.json`
(sizes and sha256 of both). This module only writes and reads that state; it knows nothing of `MemoryStore`.

Reading checks, in order: meta is valid JSON of our format; each file is present and of the recorded size
(truncation); the index's checksum (never hand unverified bytes to FAISS); the index deserialises; every record line
is valid; index and records agree in count and dimension; the records' checksum. Each failure is one
`SnapshotError` line naming the offending file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from memory.base import MemoryRecord, StoreState, question_key
from memory.errors import SnapshotError
from memory.indexes import INDEX_KINDS

FORMAT = "stable-alignment/memory-store"
FORMAT_VERSION = 1
INDEX_FILE, RECORDS_FILE, META_FILE = "index.faiss", "records.jsonl", "meta.json"
RECORD_FIELDS = ("question", "answer", "round", "source", "rating", "history")


def write_state(state: StoreState, folder: Path) -> None:
    """Write a store's `state` into the (new, empty) `folder`. Not atomic by itself: callers publish the folder."""
    index, records = state["faiss_index"], state["records"]
    index_bytes = faiss.serialize_index(index).tobytes()
    lines = [json.dumps({"id": i, **record.to_dict()}, ensure_ascii=False) for i, record in enumerate(records)]
    records_bytes = ("\n".join(lines) + "\n").encode() if lines else b""
    (folder / INDEX_FILE).write_bytes(index_bytes)
    (folder / RECORDS_FILE).write_bytes(records_bytes)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dim": state["dim"],
        "index": state["index"],
        "faiss_class": type(index).__name__,
        "count": len(records),
        "options": dict(state["options"]),
        "files": {INDEX_FILE: _digest(index_bytes), RECORDS_FILE: _digest(records_bytes)},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def read_state(folder: Path) -> StoreState:
    """The state written by `write_state`, checking everything listed in the module docstring."""
    meta = _read_meta(folder / META_FILE)
    index_bytes = _read_checked(folder / INDEX_FILE, meta["files"][INDEX_FILE], verify_hash=True)
    try:
        index = faiss.deserialize_index(np.frombuffer(index_bytes, dtype=np.uint8).copy())
    except Exception as error:
        raise SnapshotError(folder / INDEX_FILE, f"not a readable FAISS index ({type(error).__name__})") from None
    records_path = folder / RECORDS_FILE
    records_bytes = _read_checked(records_path, meta["files"][RECORDS_FILE], verify_hash=False)
    records = _parse_records(records_path, records_bytes)
    if index.ntotal != len(records):
        raise SnapshotError(
            records_path, f"has {len(records)} records but {INDEX_FILE} holds {index.ntotal} vectors; snapshot mixed up"
        )
    if index.d != meta["dim"] or index.ntotal != meta["count"]:
        raise SnapshotError(
            folder / INDEX_FILE,
            f"holds {index.ntotal} vectors of dimension {index.d}, {META_FILE} says {meta['count']} of {meta['dim']}",
        )
    if _digest(records_bytes)["sha256"] != meta["files"][RECORDS_FILE]["sha256"]:
        raise SnapshotError(records_path, f"checksum differs from {META_FILE}: modified after the snapshot was taken")
    return {
        "dim": index.d,
        "index": meta["index"],
        "options": meta["options"],
        "faiss_index": index,
        "records": records,
    }


def _digest(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SnapshotError(path, "missing: not a memory store snapshot")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SnapshotError(
            path, f"invalid JSON ({error.msg if hasattr(error, 'msg') else error}); truncated?"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(path, f"not a memory store snapshot (format is not {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(path, f"format version {meta.get('format_version')!r}; this code reads {FORMAT_VERSION}")
    try:
        files = meta["files"]
        for name in (INDEX_FILE, RECORDS_FILE):
            int(files[name]["bytes"]), str(files[name]["sha256"])
        int(meta["dim"]), int(meta["count"]), float(meta["options"]["recency_weight"])
        float(meta["options"]["recency_half_life"])
        if meta["index"] not in INDEX_KINDS:
            raise ValueError(meta["index"])
    except (KeyError, TypeError, ValueError) as error:
        raise SnapshotError(path, f"missing or bad field {error}") from None
    return meta


def _read_checked(path: Path, expected: dict[str, Any], *, verify_hash: bool) -> bytes:
    if not path.is_file():
        raise SnapshotError(path, "missing from the snapshot")
    data = path.read_bytes()
    if len(data) != expected["bytes"]:
        state = "truncated" if len(data) < expected["bytes"] else "longer than recorded"
        raise SnapshotError(path, f"{state}: {len(data)} bytes, {META_FILE} records {expected['bytes']}")
    if verify_hash and hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise SnapshotError(path, f"checksum differs from {META_FILE}: corrupt or from another snapshot")
    return data


def _parse_records(path: Path, data: bytes) -> list[MemoryRecord]:
    records: list[MemoryRecord] = []
    seen: set[str] = set()
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        try:
            item = json.loads(line)
            if item["id"] != number - 1:
                raise ValueError(f"id {item['id']} out of order (expected {number - 1})")
            record = MemoryRecord(**{name: item[name] for name in RECORD_FIELDS})
            if not isinstance(record.question, str) or not isinstance(record.answer, str):
                raise ValueError("question and answer must be strings")
        except json.JSONDecodeError as error:
            raise SnapshotError(f"{path}:{number}", f"invalid JSON ({error.msg}); truncated?") from None
        except (KeyError, TypeError, ValueError) as error:
            raise SnapshotError(f"{path}:{number}", f"bad record ({error})") from None
        key = question_key(record.question)
        if key in seen:
            raise SnapshotError(f"{path}:{number}", "question stored twice; records are inconsistent")
        seen.add(key)
        records.append(record)
    return records
