"""Top-k memory search at scale: `memory.store.MemoryStore` (FAISS) vs a reference-style brute-force cosine.

The reference keeps each agent's question embeddings as Python lists and, for every query, loops over all of them
computing one cosine distance per stored item (scipy's `spatial.distance.cosine`, as `openai.embeddings_utils.
distances_from_embeddings` does), then takes the nearest. This script builds both over the same N unit vectors,
checks that they return the same top-k for the timed queries, and prints per-query times and the ratio as JSON.
The slow side is timed on a few queries only (`--ref-queries`); the store on many (`--queries`), one query per call,
as an agent retrieves.

    python benchmarks/bench_memory_search.py                 # 100k memories, 384-d, k=5
    python benchmarks/bench_memory_search.py --n 20000 --index hnsw
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory.store import MemoryStore  # noqa: E402


def clustered_unit_vectors(n: int, dim: int, seed: int = 0, centres: int = 500) -> np.ndarray:
    """Unit vectors around topic centres, like sentence embeddings of many related questions."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim)).astype(np.float32)
    x = middle[rng.integers(0, centres, n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosine_distance_fn() -> tuple[Callable[[list[float], list[float]], float], str]:
    """The reference's per-pair distance: scipy's `cosine` if installed, else the same formula in numpy."""
    try:
        from scipy.spatial.distance import cosine

        return cosine, "scipy.spatial.distance.cosine per stored item"
    except ImportError:  # pragma: no cover - scipy comes with the ML stack

        def cosine(u: list[float], v: list[float]) -> float:
            a, b = np.asarray(u), np.asarray(v)
            return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

        return cosine, "numpy cosine per stored item"


def reference_topk(query: list[float], embeddings: list[list[float]], k: int, distance: Callable) -> list[int]:
    """Reference style: one distance per stored embedding in a Python loop, then sort."""
    distances = [distance(query, e) for e in embeddings]
    return [int(i) for i in np.argsort(distances, kind="stable")[:k]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="memories in the store")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--queries", type=int, default=300, help="queries timed on the store")
    parser.add_argument("--ref-queries", type=int, default=3, help="queries timed on the reference-style scan")
    parser.add_argument("--index", default="flat", choices=["flat", "hnsw", "ivf"])
    parser.add_argument("--min-ratio", type=float, default=50.0, help="exit 1 if the speed-up is below this")
    args = parser.parse_args()

    vectors = clustered_unit_vectors(args.n + args.queries, args.dim)
    base, queries = vectors[: args.n], vectors[args.n :]

    started = time.perf_counter()
    store = MemoryStore(args.dim, args.index)
    for i, vector in enumerate(base):
        store.add(f"question {i}", f"answer {i}", vector, round=0, source="revision")
    store.search(queries[0], k=args.k, threshold=None)  # builds a trained index if the kind needs one
    build_s = time.perf_counter() - started

    started = time.perf_counter()
    store_hits = [store.search(q, k=args.k, threshold=None) for q in queries]
    store_s = (time.perf_counter() - started) / len(queries)
    store_ids = [[int(h.question.split()[1]) for h in hits] for hits in store_hits]

    distance, how = cosine_distance_fn()
    embeddings = base.astype(np.float64).tolist()  # the reference keeps Python lists of floats
    ref_queries = queries[: args.ref_queries].astype(np.float64).tolist()
    started = time.perf_counter()
    ref_ids = [reference_topk(q, embeddings, args.k, distance) for q in ref_queries]
    ref_s = (time.perf_counter() - started) / len(ref_queries)

    exact = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, : args.k].tolist()
    same_as_reference = ref_ids == store_ids[: args.ref_queries]
    recall = float(np.mean([len(set(g) & set(e)) / args.k for g, e in zip(store_ids, exact, strict=True)]))
    ratio = ref_s / store_s
    report = {
        "benchmark": "memory_search",
        "memories": args.n,
        "dim": args.dim,
        "k": args.k,
        "store_index": store.index_type,
        "store_build_s": round(build_s, 2),
        "store_query_ms": round(store_s * 1e3, 4),
        "store_queries_timed": len(queries),
        "reference_query_ms": round(ref_s * 1e3, 2),
        "reference_queries_timed": len(ref_queries),
        "reference_method": f"Python loop over lists, {how}",
        "same_topk_as_reference": same_as_reference,
        "store_recall_at_k_vs_exact_numpy": round(recall, 4),
        "speedup": round(ratio, 1),
        "target_speedup": args.min_ratio,
    }
    print(json.dumps(report, indent=1))
    if not same_as_reference and args.index == "flat":
        sys.exit("the store's top-k differs from the reference-style scan")
    if ratio < args.min_ratio:
        sys.exit(f"speed-up {ratio:.1f}x is below {args.min_ratio}x")


if __name__ == "__main__":
    main()
