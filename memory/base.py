"""Contracts of the memory layer: what an embedder is, what a memory holds, what a search returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np


def question_key(question: str) -> str:
    """Questions that differ only in surrounding or repeated whitespace are the same question."""
    return " ".join(question.split())


@runtime_checkable
class Embedder(Protocol):
    """Anything with an async batched `embed`; vectors are float32, shape (len(texts), dim), L2-normalised."""

    dim: int

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class MemoryRecord:
    """One remembered question → answer. A newer answer to the same question supersedes; `history` keeps the old ones."""

    question: str
    answer: str
    round: int = -1  # -1 for seeded prior memories
    source: str = "prior"  # "prior" | "revision" | ...
    rating: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MemoryHit:
    """A retrieved memory and its cosine similarity to the query."""

    question: str
    answer: str
    similarity: float
    round: int = -1
    source: str = "prior"
    rating: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StoreState(TypedDict):
    """Everything one `MemoryStore` holds (`state_dict` / `from_state_dict`); `memory.store_files` writes and reads it.

    `options`: `recency_weight`, `recency_half_life` and the `IndexParams` fields; `faiss_index`: a FAISS index of
    `len(records)` vectors of dimension `dim`, row i belonging to record i.
    """

    dim: int
    index: str  # the kind: flat | hnsw | ivf
    options: dict[str, Any]
    faiss_index: Any  # faiss.Index
    records: list[MemoryRecord]
