"""Save/load round trips; truncated, mismatched or missing snapshot files give one-line errors naming the file;
a crash while saving leaves the last complete snapshot readable; world snapshots and the cache persist too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from memory.atomic import POINTER, current_dir, publish_dir
from memory.cache import EmbeddingCache
from memory.errors import SnapshotError
from memory.snapshot import load_all, load_cache, save_all
from memory.store import MemoryStore


def make_store(kind: str = "flat", n: int = 40, seed: int = 0, **kwargs) -> MemoryStore:
    rng = np.random.default_rng(seed)
    store = MemoryStore(16, kind, **kwargs)
    for i in range(n):
        store.add(
            f"question {i}", f"answer {i}", rng.standard_normal(16), round=i % 3, source="revision", rating=i / 10
        )
    store.add("question 0", "answer 0, revised", store.vectors()[0], round=5, source="revision")
    return store


def same(a: MemoryStore, b: MemoryStore) -> None:
    assert [r.to_dict() for r in a.records()] == [r.to_dict() for r in b.records()]
    np.testing.assert_allclose(a.vectors(), b.vectors(), atol=1e-6)
    queries = np.random.default_rng(9).standard_normal((8, 16))
    assert [[h.to_dict() for h in row] for row in a.search_many(queries, 3, None)] == [
        [h.to_dict() for h in row] for row in b.search_many(queries, 3, None)
    ]


def one_line_error(folder: Path, culprit: str) -> str:
    with pytest.raises(SnapshotError) as info:
        MemoryStore.load(folder)
    message = str(info.value)
    assert "\n" not in message and culprit in message, message
    return message


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_round_trip(tmp_path, kind):
    store = make_store(kind, n=300, ivf_min_train=200, recency_weight=0.1, hnsw_ef_search=77)
    store.save(tmp_path / "mem")
    loaded = MemoryStore.load(tmp_path / "mem")
    same(store, loaded)
    assert loaded.index_type == store.index_type
    assert (loaded.kind, loaded.recency_weight, loaded.params.hnsw_ef_search) == (kind, 0.1, 77)
    loaded.add("fresh question", "fresh answer", np.ones(16), round=9)  # a loaded store keeps working
    assert loaded.search(np.ones(16), 1)[0].answer == "fresh answer"
    assert loaded.get("question 0").history[0]["answer"] == "answer 0"


def test_empty_store_round_trip(tmp_path):
    MemoryStore(8).save(tmp_path / "m")
    assert len(MemoryStore.load(tmp_path / "m")) == 0


def test_saving_again_replaces_the_snapshot_and_cleans_old_versions(tmp_path):
    store = make_store()
    store.save(tmp_path / "m")
    store.add("new", "new", np.ones(16), round=7)
    store.save(tmp_path / "m")
    assert len(MemoryStore.load(tmp_path / "m")) == len(store)
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if p.name != POINTER) == [current_dir(tmp_path / "m").name]


def test_truncated_index_names_the_file(tmp_path):
    make_store().save(tmp_path / "m")
    index = current_dir(tmp_path / "m") / "index.faiss"
    index.write_bytes(index.read_bytes()[:100])
    assert "truncated" in one_line_error(tmp_path / "m", str(index))


def test_truncated_records_name_the_file(tmp_path):
    make_store().save(tmp_path / "m")
    records = current_dir(tmp_path / "m") / "records.jsonl"
    records.write_bytes(records.read_bytes()[:-30])
    assert "truncated" in one_line_error(tmp_path / "m", str(records))


def test_records_from_another_snapshot_are_a_mismatch(tmp_path):
    make_store(n=40).save(tmp_path / "a")
    make_store(n=39).save(tmp_path / "b")
    meta_a = current_dir(tmp_path / "a") / "meta.json"
    meta = json.loads(meta_a.read_text())
    shutil.copy(current_dir(tmp_path / "b") / "records.jsonl", current_dir(tmp_path / "a") / "records.jsonl")
    meta["files"]["records.jsonl"]["bytes"] = (current_dir(tmp_path / "a") / "records.jsonl").stat().st_size
    meta_a.write_text(json.dumps(meta))  # even with a consistent size entry, counts must agree
    message = one_line_error(tmp_path / "a", "records.jsonl")
    assert "39 records" in message and "40 vectors" in message


def test_edited_records_fail_the_checksum(tmp_path):
    make_store().save(tmp_path / "m")
    records = current_dir(tmp_path / "m") / "records.jsonl"
    records.write_text(records.read_text().replace("answer 3", "answer 9"))
    assert "checksum" in one_line_error(tmp_path / "m", str(records))


def test_corrupt_index_bytes_fail_before_faiss_reads_them(tmp_path):
    make_store().save(tmp_path / "m")
    index = current_dir(tmp_path / "m") / "index.faiss"
    data = bytearray(index.read_bytes())
    data[60:80] = b"\xff" * 20
    index.write_bytes(bytes(data))
    assert "checksum" in one_line_error(tmp_path / "m", str(index))


def test_missing_or_broken_meta_and_pointer(tmp_path):
    make_store().save(tmp_path / "m")
    meta = current_dir(tmp_path / "m") / "meta.json"
    meta.write_text(meta.read_text()[:50])
    one_line_error(tmp_path / "m", str(meta))
    (tmp_path / "m" / POINTER).write_text("v-does-not-exist\n")
    one_line_error(tmp_path / "m", str(tmp_path / "m" / POINTER))
    (tmp_path / "m" / POINTER).unlink()
    one_line_error(tmp_path / "m", str(tmp_path / "m" / POINTER))
    one_line_error(tmp_path / "nothing", "nothing")


def test_crash_during_save_keeps_the_last_complete_snapshot(tmp_path, monkeypatch):
    store = make_store()
    store.save(tmp_path / "m")
    before = current_dir(tmp_path / "m")
    store.add("after", "after", np.ones(16), round=8)

    import memory.store_files as files

    def crash(target: Path) -> None:
        (target / "index.faiss").write_bytes(b"half")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(files, "write_state", lambda state, target: crash(target))
    with pytest.raises(KeyboardInterrupt):
        store.save(tmp_path / "m")
    assert current_dir(tmp_path / "m") == before
    assert len(MemoryStore.load(tmp_path / "m")) == len(store) - 1
    # a staging folder left by a hard kill (no cleanup) is ignored by load and removed by the next save
    (tmp_path / "m" / ".v-99-x.partial").mkdir()
    assert len(MemoryStore.load(tmp_path / "m")) == len(store) - 1
    monkeypatch.undo()
    store.save(tmp_path / "m")
    assert not (tmp_path / "m" / ".v-99-x.partial").exists()
    assert len(MemoryStore.load(tmp_path / "m")) == len(store)


def test_publish_dir_switches_only_when_complete(tmp_path):
    publish_dir(tmp_path / "d", lambda t: (t / "x").write_text("1"))
    with pytest.raises(RuntimeError):
        publish_dir(tmp_path / "d", lambda t: ((t / "x").write_text("2"), (_ for _ in ()).throw(RuntimeError()))[0])
    assert (current_dir(tmp_path / "d") / "x").read_text() == "1"


class FakeEmbedder:
    dim = 16

    async def embed(self, texts):
        rng = np.random.default_rng(len(texts))
        x = rng.standard_normal((len(texts), 16)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_world_snapshot_round_trip_with_cache(tmp_path):
    import asyncio

    stores = {0: make_store(seed=0), 1: make_store("hnsw", seed=1), 7: make_store(n=5, seed=2)}
    cache = EmbeddingCache(FakeEmbedder())
    vectors = asyncio.run(cache.embed(["a", "b", "a"]))
    save_all(tmp_path / "w", stores, {"round": 3, "world_id": "w1"}, cache=cache)
    loaded, meta = load_all(tmp_path / "w")
    assert meta == {"round": 3, "world_id": "w1"} and sorted(loaded) == [0, 1, 7]
    for agent in stores:
        same(stores[agent], loaded[agent])
    restored = load_cache(tmp_path / "w", FakeEmbedder())
    again = asyncio.run(restored.embed(["b", "a"]))
    np.testing.assert_allclose(again, vectors[[1, 0]])
    assert restored.stats()["inner_calls"] == 0  # nothing re-embedded after resume


def test_world_snapshot_names_the_bad_agent_file(tmp_path):
    save_all(tmp_path / "w", {0: make_store(), 1: make_store(seed=1)}, {"round": 0})
    records = current_dir(tmp_path / "w") / "agents" / "1" / "records.jsonl"
    records.write_bytes(records.read_bytes()[:-10])
    with pytest.raises(SnapshotError) as info:
        load_all(tmp_path / "w")
    assert str(records) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TypeError):
        save_all(tmp_path / "w", {0: make_store()}, {"not json": object()})
    assert (current_dir(tmp_path / "w") / "agents" / "1").is_dir()  # nothing overwritten by the failed save


def test_cache_save_and_load(tmp_path):
    import asyncio

    cache = EmbeddingCache(FakeEmbedder())
    asyncio.run(cache.embed(["x", "y"]))
    save_all(tmp_path / "c", {}, cache=cache)
    loaded = load_cache(tmp_path / "c", FakeEmbedder())
    assert len(loaded) == 2 and "x" in loaded
    vectors = current_dir(tmp_path / "c") / "cache" / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:90])
    with pytest.raises(SnapshotError, match="vectors.npy"):
        load_cache(tmp_path / "c", FakeEmbedder())
