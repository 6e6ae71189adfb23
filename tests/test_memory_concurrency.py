"""Concurrent async writers and readers on one store lose nothing; the cache embeds each text once under load."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from memory.cache import EmbeddingCache
from memory.store import MemoryStore


def vec(i: int, dim: int = 24) -> np.ndarray:
    return np.random.default_rng(i).standard_normal(dim).astype(np.float32)


def test_async_writers_and_readers_lose_nothing(tmp_path):
    store = MemoryStore(24)
    writers, per_writer = 8, 60
    seen_sizes: list[int] = []

    async def writer(w: int) -> None:
        for j in range(per_writer):
            i = w * per_writer + j
            await asyncio.to_thread(store.add, f"q{i}", f"a{i}", vec(i), round=j, source="revision")
            if j % 7 == 0:  # supersede a shared question from every writer
                await asyncio.to_thread(store.add, "shared", f"w{w}-{j}", vec(99_999), round=j, source="revision")

    async def reader() -> None:
        for i in range(200):
            hits = await asyncio.to_thread(store.search, vec(i % 50), 3, None)
            seen_sizes.append(len(store))
            assert all(h.answer.startswith(("a", "w")) for h in hits)

    async def saver() -> None:
        for _ in range(5):
            await asyncio.to_thread(store.save, tmp_path / "snap")
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(writer(w) for w in range(writers)), reader(), reader(), saver())

    asyncio.run(main())
    total = writers * per_writer
    assert len(store) == total + 1
    for i in range(total):
        assert store.get(f"q{i}").answer == f"a{i}"
        assert store.search(vec(i), 1, 0.99)[0].question == f"q{i}"
    shared = store.get("shared")
    assert len(shared.history) + 1 == writers * len(range(0, per_writer, 7))
    assert shared.round == max(range(0, per_writer, 7))
    assert len(seen_sizes) == 400 and max(seen_sizes) <= total + 1  # both readers ran to the end
    store.save(tmp_path / "snap")
    assert len(MemoryStore.load(tmp_path / "snap")) == total + 1


def test_threads_saving_into_one_folder_all_succeed(tmp_path):
    stores = [MemoryStore(24) for _ in range(4)]
    for n, store in enumerate(stores):
        for i in range(n + 1):
            store.add(f"q{i}", "a", vec(i))
    errors: list[BaseException] = []

    def save(store: MemoryStore) -> None:
        try:
            for _ in range(5):
                store.save(tmp_path / "shared")
        except BaseException as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert 1 <= len(MemoryStore.load(tmp_path / "shared")) <= 4  # one complete snapshot, whichever saved last
    assert len([p for p in (tmp_path / "shared").iterdir() if p.name != "CURRENT"]) == 1


def test_threads_adding_at_once():
    store = MemoryStore(24)
    threads = [
        threading.Thread(target=lambda t=t: [store.add(f"t{t}-{i}", "a", vec(t * 1000 + i)) for i in range(200)])
        for t in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 1200
    assert store.index_type == "IndexFlatIP"
    assert store.search(vec(5 * 1000 + 17), 1, 0.99)[0].question == "t5-17"


class CountingEmbedder:
    """Slow fake embedder that records every batch it is asked for."""

    dim = 8

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def embed(self, texts):
        self.batches.append(list(texts))
        await asyncio.sleep(0.01)
        return np.stack([vec(hash(t) % 10_000, 8) / np.linalg.norm(vec(hash(t) % 10_000, 8)) for t in texts])


def test_cache_embeds_each_text_once_across_batches_calls_and_concurrent_callers():
    inner = CountingEmbedder()
    cache = EmbeddingCache(inner)

    async def main():
        questions = [f"question {i}" for i in range(10)]
        # 100 agents ask at once, each its world's question plus duplicates within a batch
        results = await asyncio.gather(*(cache.embed([questions[a % 10], questions[a % 10]]) for a in range(100)))
        later = await cache.embed(questions)
        return results, later

    results, later = asyncio.run(main())
    # each text exactly once, and the 100 concurrent callers' misses went out as one batch
    assert len(inner.batches) == 1 and sorted(inner.batches[0]) == sorted(f"question {i}" for i in range(10))
    stats = cache.stats()
    assert stats == {"requested": 210, "embedded": 10, "inner_calls": 1, "hits": 200, "cached": 10}
    for a, pair in enumerate(results):
        np.testing.assert_array_equal(pair[0], later[a % 10])
        np.testing.assert_array_equal(pair[1], later[a % 10])


def test_cache_failure_propagates_and_is_retried():
    class Flaky(CountingEmbedder):
        fail = True

        async def embed(self, texts):
            if self.fail:
                self.fail = False
                await asyncio.sleep(0.01)
                raise ConnectionError("endpoint down")
            return await super().embed(texts)

    cache = EmbeddingCache(Flaky())

    async def main():
        outcomes = await asyncio.gather(cache.embed(["x"]), cache.embed(["x"]), return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        return await cache.embed(["x"])

    assert asyncio.run(main()).shape == (1, 8)
    assert "x" in cache


def test_cache_sequential_misses_are_separate_calls_and_a_cancelled_caller_spoils_nothing():
    inner = CountingEmbedder()
    cache = EmbeddingCache(inner)

    async def main():
        await cache.embed(["a"])
        await cache.embed(["b", "a"])
        impatient = asyncio.ensure_future(cache.embed(["c"]))
        patient = asyncio.ensure_future(cache.embed(["c", "d"]))
        await asyncio.sleep(0.001)  # both queued; the batch is in flight
        impatient.cancel()
        got = await patient
        assert impatient.cancelled()
        return got

    got = asyncio.run(main())
    assert inner.batches == [["a"], ["b"], ["c", "d"]]
    assert got.shape == (2, 8) and len(cache) == 4
