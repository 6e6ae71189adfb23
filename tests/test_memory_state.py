"""A store gives and takes its whole state (`state_dict` / `from_state_dict`); `memory.store_files` only writes and
reads that state; `memory.atomic` is the project's one crash-safe writer (files, JSON, whole folders)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memory import store_files
from memory.atomic import write_dir, write_json
from memory.store import MemoryStore


def filled(kind: str = "hnsw", n: int = 30) -> MemoryStore:
    rng = np.random.default_rng(1)
    store = MemoryStore(8, kind, recency_weight=0.2, hnsw_ef_search=40)
    for i in range(n):
        store.add(f"question {i}", f"answer {i}", rng.standard_normal(8), round=i % 4, source="revision", rating=5)
    return store


def test_state_round_trip_in_memory_and_through_files(tmp_path: Path) -> None:
    store = filled()
    state = store.state_dict()
    store.add("later", "later", np.ones(8), round=9)  # the state is a copy: later writes do not reach it
    assert state["faiss_index"].ntotal == len(state["records"]) == 30
    copy = MemoryStore.from_state_dict(state)
    assert len(copy) == 30 and copy.get("later") is None
    assert (copy.kind, copy.recency_weight, copy.params.hnsw_ef_search) == ("hnsw", 0.2, 40)
    store_files.write_state(store.state_dict(), tmp_path)
    loaded = MemoryStore.from_state_dict(store_files.read_state(tmp_path))
    assert [r.to_dict() for r in loaded.records()] == [r.to_dict() for r in store.records()]
    query = np.random.default_rng(2).standard_normal((4, 8))
    assert loaded.search_many(query, 3, None) == store.search_many(query, 3, None)


def test_a_state_whose_index_and_records_disagree_is_refused() -> None:
    state = filled("flat").state_dict()
    state["records"] = state["records"][:-1]
    with pytest.raises(ValueError, match="30 vectors .* 29 records"):
        MemoryStore.from_state_dict(state)


def test_write_dir_creates_the_folder_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "model"

    def half(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        write_dir(target, half)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    (tmp_path / ".model.partial").mkdir()  # a staging folder left by a hard kill is cleared
    write_dir(target, lambda folder: (folder / "config.json").write_text('{"ok": 1}'))
    assert json.loads((target / "config.json").read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_write_json_is_indented_utf8_with_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"
    write_json(path, {"name": "Zoë", "n": [1, 2]})
    assert path.read_bytes() == '{\n "name": "Zoë",\n "n": [\n  1,\n  2\n ]\n}\n'.encode()
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary file left behind
