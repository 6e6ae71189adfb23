"""MemoryStore: FAISS top-k equals exact numpy search; supersede keeps history; threshold; recency; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from memory.store import MemoryStore


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, dim: int, centres: int = 40) -> np.ndarray:
    """Unit vectors around a few centres, like sentence embeddings of related questions."""
    middle = unit(rng, centres, dim)[rng.integers(0, centres, n)]
    x = middle + 0.35 * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def numpy_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ base.T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def filled(kind: str, base: np.ndarray, **kwargs) -> MemoryStore:
    store = MemoryStore(base.shape[1], kind, **kwargs)
    for i, vector in enumerate(base):
        store.add(f"q{i}", f"a{i}", vector, round=0, source="revision")
    return store


def test_flat_topk_equals_exact_numpy_search():
    rng = np.random.default_rng(0)
    base, queries = unit(rng, 3000, 64), unit(rng, 50, 64)
    store = filled("flat", base)
    expected = numpy_topk(base, queries, 10)
    hits = store.search_many(queries, k=10, threshold=None)
    got = np.array([[int(h.question[1:]) for h in row] for row in hits])
    assert np.array_equal(got, expected)
    sims = np.array([[h.similarity for h in row] for row in hits])
    np.testing.assert_allclose(sims, np.take_along_axis(queries @ base.T, expected, axis=1), atol=1e-5)
    assert store.index_type == "IndexFlatIP"


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_have_high_recall(kind):
    rng = np.random.default_rng(1)
    data = clustered(rng, 4100, 32)
    base, queries = data[:4000], data[4000:]
    store = filled(kind, base, ivf_min_train=1000)
    assert store.index_type == {"hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}[kind]
    expected = numpy_topk(base, queries, 5)
    got = [[int(h.question[1:]) for h in row] for row in store.search_many(queries, k=5, threshold=None)]
    recall = np.mean([len(set(g) & set(e)) / 5 for g, e in zip(got, expected.tolist(), strict=True)])
    assert recall >= 0.9, recall
    assert [h.question for h in store.search(base[7], k=1, threshold=None)] == ["q7"]


def test_ivf_store_is_exact_until_trained():
    rng = np.random.default_rng(2)
    store = filled("ivf", unit(rng, 100, 16), ivf_min_train=500)
    assert store.index_type == "IndexFlatIP"


def test_threshold_is_strict_and_k_limits_hits():
    store = MemoryStore(2)
    store.add("a", "A", [1.0, 0.0])
    store.add("b", "B", [0.7, np.sqrt(1 - 0.49)])  # cosine 0.7 with the query below
    store.add("c", "C", [0.0, 1.0])
    query = np.array([1.0, 0.0])
    assert [h.question for h in store.search(query, k=3, threshold=0.7)] == ["a"]  # 0.7 is not > 0.7
    assert [h.question for h in store.search(query, k=3, threshold=0.69)] == ["a", "b"]
    assert [h.question for h in store.search(query, k=1, threshold=None)] == ["a"]
    assert store.search(np.array([-1.0, 0.0]), k=1, threshold=0.7) == []
    assert MemoryStore(2).search(query, k=1) == []


def test_new_answer_supersedes_and_history_is_kept():
    store = MemoryStore(3)
    v = np.array([1.0, 2.0, 3.0])
    first = store.add("Is lying ok?", "prior answer", v, round=-1, source="prior")
    again = store.add("Is  lying ok? ", "round 0 answer", v, round=0, source="revision", rating=5.5)
    late = store.add("Is lying ok?", "a late round -1 write", v, round=-1, source="prior")
    assert first == again == late and len(store) == 1
    record = store.get("Is lying ok?")
    assert (record.answer, record.round, record.source, record.rating) == ("round 0 answer", 0, "revision", 5.5)
    assert [h["answer"] for h in record.history] == ["prior answer", "a late round -1 write"]
    (hit,) = store.search(v, k=5, threshold=0.7)
    assert hit.answer == "round 0 answer" and hit.rating == 5.5
    store.add("Is lying ok?", "round 2 answer", v, round=2, source="revision")
    assert store.get("Is lying ok?").answer == "round 2 answer"
    assert len(store.get("Is lying ok?").history) == 3


def test_supersede_with_a_different_vector_moves_the_record():
    store = MemoryStore(2)
    store.add("q", "old", [1.0, 0.0], round=0)
    store.add("other", "x", [0.0, 1.0], round=0)
    store.add("q", "new", [0.6, 0.8], round=1)
    assert len(store) == 2
    (hit,) = store.search([0.6, 0.8], k=1, threshold=0.99)
    assert (hit.question, hit.answer) == ("q", "new")


def test_recency_weighting_prefers_newer_memories():
    base = np.array([[1.0, 0.0], [0.995, 0.0998]])  # both close to the query; the older one is closer
    plain, weighted = MemoryStore(2), MemoryStore(2, recency_weight=0.2, recency_half_life=1.0)
    for store in (plain, weighted):
        store.add("old", "old answer", base[0], round=0)
        store.add("new", "new answer", base[1], round=6)
    assert plain.search([1.0, 0.0], k=1)[0].question == "old"
    top = weighted.search([1.0, 0.0], k=2)
    assert [h.question for h in top] == ["new", "old"]
    assert top[0].similarity == pytest.approx(0.995 / np.linalg.norm(base[1]), abs=1e-5)  # raw cosine reported


def test_vectors_are_normalised_and_bad_vectors_rejected():
    store = MemoryStore(3)
    store.add("q", "a", [3.0, 0.0, 4.0])
    np.testing.assert_allclose(store.vectors()[0], [0.6, 0.0, 0.8], atol=1e-6)
    for bad in ([1.0, 2.0], [0.0, 0.0, 0.0], [np.nan, 1.0, 1.0]):
        with pytest.raises(ValueError):
            store.add("bad", "a", bad)
    with pytest.raises(ValueError):
        MemoryStore(3, "lsh")
    assert len(store) == 1
