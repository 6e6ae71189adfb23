"""The real local encoder (all-MiniLM-L6-v2) on real sentences: FAISS top-k equals exact numpy search, vectors do not
depend on batching, the default threshold separates paraphrases from other questions, and the cache embeds a world's
question once however many agents ask."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from conf import CONFIG_DIR
from memory.cache import EmbeddingCache
from memory.embedders import LocalEncoder
from memory.priors import load_priors
from memory.store import MemoryStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder() -> LocalEncoder:
    return LocalEncoder(batch_size=64)


@pytest.fixture(scope="module")
def corpus(encoder: LocalEncoder) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Stored: the shipped priors' questions and answers; queries: the shipped world questions."""
    from importlib import resources

    items = load_priors()
    stored = [it.question for it in items] + [it.good for it in items] + [it.bad for it in items]
    lines = (resources.files("environment") / "data" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    queries = [json.loads(line)["question"] for line in lines if line.strip()]
    return stored, encoder.encode(stored), queries, encoder.encode(queries)


def test_vectors_are_unit_384d_and_independent_of_batching(encoder, corpus):
    stored, vectors, _queries, _ = corpus
    assert vectors.shape == (len(stored), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # short and long sentences padded together must embed as they do alone (mask-aware mean pooling)
    picks = [0, len(stored) // 2, len(stored) - 1]
    alone = np.concatenate([encoder.encode([stored[i]]) for i in picks])
    np.testing.assert_allclose(alone, vectors[picks], atol=2e-5)


def test_flat_store_topk_equals_exact_numpy_search_on_real_embeddings(corpus):
    stored, vectors, _queries, query_vectors = corpus
    store = MemoryStore(384)
    for i, (text, vector) in enumerate(zip(stored, vectors, strict=True)):
        store.add(text, f"answer {i}", vector, round=0, source="revision")
    assert len(store) == len(stored)
    k = 5
    sims = query_vectors @ vectors.T
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    rows = store.search_many(query_vectors, k=k, threshold=None)
    got = np.array([[stored.index(hit.question) for hit in row] for row in rows])
    assert np.array_equal(got, expected)
    np.testing.assert_allclose(
        [[hit.similarity for hit in row] for row in rows], np.take_along_axis(sims, expected, axis=1), atol=1e-5
    )
    # the reference's rule, top-1 above 0.7, agrees with numpy too
    thresholded = store.search_many(query_vectors, k=1, threshold=0.7)
    assert [len(row) for row in thresholded] == [int(sims[i].max() > 0.7) for i in range(len(sims))]


def test_hnsw_store_finds_the_exact_top1_on_real_embeddings(corpus):
    stored, vectors, _queries, query_vectors = corpus
    store = MemoryStore(384, "hnsw")
    for text, vector in zip(stored, vectors, strict=True):
        store.add(text, "a", vector)
    best = (query_vectors @ vectors.T).argmax(axis=1)
    got = [stored.index(row[0].question) for row in store.search_many(query_vectors, k=1, threshold=None)]
    assert np.mean(np.array(got) == best) >= 0.95


def test_threshold_separates_a_paraphrase_from_another_question(encoder):
    asked, paraphrase, other = encoder.encode(
        [
            "Is it acceptable to lie to a friend to protect their feelings?",
            "Is it okay to lie to a friend so that their feelings are not hurt?",
            "Should cities ban cars from their centres?",
        ]
    )
    threshold = float(OmegaConf.load(CONFIG_DIR / "memory" / "default.yaml").threshold)
    store = MemoryStore(384)
    store.add("Is it acceptable to lie to a friend to protect their feelings?", "earlier answer", asked, round=0)
    assert float(paraphrase @ asked) > 0.7 > threshold > float(other @ asked)
    assert [hit.answer for hit in store.search(paraphrase, k=1, threshold=threshold)] == ["earlier answer"]
    assert store.search(other, k=1, threshold=threshold) == []


def test_cache_embeds_a_question_once_for_a_whole_world(encoder):
    encoder_calls = encoder.calls
    cache = EmbeddingCache(encoder)
    questions = ["Should voting be compulsory?", "Is eating meat wrong?", "Should voting be compulsory?"]

    async def world() -> list[np.ndarray]:
        # nine agents ask for their questions at once, then every agent's four raters ask again
        first = await asyncio.gather(*(cache.embed([questions[a % 3]]) for a in range(9)))
        await asyncio.gather(*(cache.embed([questions[a % 3]]) for a in range(36)))
        return first

    first = asyncio.run(world())
    assert encoder.calls - encoder_calls == 1  # one batched encoder call for the whole round
    assert cache.stats()["embedded"] == 2 and cache.stats()["requested"] == 45
    np.testing.assert_allclose(first[0][0], encoder.encode([questions[0]])[0], atol=2e-5)
