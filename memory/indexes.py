"""FAISS index construction for the store: exact inner product by default, HNSW or IVF for large memories.

All indexes use inner product on L2-normalised vectors, i.e. cosine similarity. Ids are row positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np

INDEX_KINDS = ("flat", "hnsw", "ivf")


@dataclass(frozen=True)
class IndexParams:
    """Tuning knobs; only the ones of the chosen kind matter."""

    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    ivf_nlist: int = 0  # 0: about 4·sqrt(n) at training time
    ivf_nprobe: int = 16
    ivf_min_train: int = 2048  # below this many memories an "ivf" store searches exactly


def check_kind(kind: str) -> str:
    if kind not in INDEX_KINDS:
        raise ValueError(f"memory index must be one of {', '.join(INDEX_KINDS)}, not {kind!r}")
    return kind


def build_index(kind: str, dim: int, vectors: np.ndarray, params: IndexParams) -> faiss.Index:
    """A fresh index of `kind` holding `vectors` (float32, normalised) at ids 0..n-1."""
    check_kind(kind)
    n = len(vectors)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.hnsw_ef_construction
        index.hnsw.efSearch = params.hnsw_ef_search
    elif kind == "ivf" and n >= params.ivf_min_train:
        nlist = params.ivf_nlist or max(1, int(4 * math.sqrt(n)))
        nlist = min(nlist, max(1, n // 39))  # FAISS wants ≥ 39 training points per centroid
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(params.ivf_nprobe, nlist)
        index.make_direct_map()
    else:
        index = faiss.IndexFlatIP(dim)
    if n:
        index.add(vectors)
    return index


def needs_ivf_training(kind: str, index: faiss.Index, n: int, params: IndexParams) -> bool:
    """An "ivf" store starts exact and switches to a trained IVF index once it is big enough."""
    return kind == "ivf" and isinstance(index, faiss.IndexFlat) and n >= params.ivf_min_train


def apply_search_params(index: faiss.Index, params: IndexParams) -> None:
    """Restore search-time knobs on a deserialised index."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = params.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = min(params.ivf_nprobe, index.nlist)
        index.make_direct_map()
