"""One agent's memory: records of question → answer, searched by cosine similarity through a FAISS index.

- Exact search (`IndexFlatIP` on normalised vectors) by default; `index="hnsw"` or `"ivf"` for large memories.
- A new answer to a known question supersedes the old one (the one from the latest round wins; ties: the newer call);
  the replaced versions stay in `record.history`.
- `search(vector, k, threshold)` returns up to k hits whose cosine similarity is strictly above `threshold`
  (the reference uses top-1 at > 0.7). Optional recency weighting re-ranks candidates by
  `similarity + recency_weight · 0.5 ** (age_in_rounds / recency_half_life)`; the threshold stays on similarity.
- Thread-safe: every public method holds one lock, so concurrent writers and readers lose nothing.
- `state_dict()` / `from_state_dict(state)`: the store gives and takes its whole state; `memory.store_files` writes
  and reads that state, `memory.snapshot` publishes many at once. `save(folder)` / `MemoryStore.load(folder)` are the
  one-store conveniences: atomic (see `memory.atomic`), and the load checks that index and records agree.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from memory import atomic, store_files
from memory.base import MemoryHit, MemoryRecord, StoreState, question_key
from memory.indexes import IndexParams, apply_search_params, build_index, check_kind, needs_ivf_training


def as_unit_rows(vectors: Any, dim: int) -> np.ndarray:
    """(n, dim) float32 C-contiguous, L2-normalised; ValueError on a wrong shape, NaN/inf or a zero vector."""
    array = np.array(vectors, dtype=np.float32, copy=True)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"expected vectors of dimension {dim}, got shape {tuple(np.shape(vectors))}")
    if not np.isfinite(array).all():
        raise ValueError("vector contains NaN or infinity")
    norms = np.linalg.norm(array, axis=1)
    if (norms == 0).any():
        raise ValueError("cannot store or search a zero vector")
    array /= norms[:, None]
    return np.ascontiguousarray(array)


class MemoryStore:
    """A FAISS-backed, thread-safe, persistent memory of one agent."""

    def __init__(
        self,
        dim: int,
        index: str = "flat",
        *,
        recency_weight: float = 0.0,
        recency_half_life: float = 5.0,
        **index_params: int,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"memory dimension must be positive, not {dim}")
        if recency_weight < 0 or recency_half_life <= 0:
            raise ValueError("recency_weight must be ≥ 0 and recency_half_life > 0")
        self.dim = int(dim)
        self.kind = check_kind(index)
        self.params = IndexParams(**index_params)
        self.recency_weight = float(recency_weight)
        self.recency_half_life = float(recency_half_life)
        self._lock = threading.RLock()
        self._records: list[MemoryRecord] = []
        self._by_question: dict[str, int] = {}
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._index = build_index(self.kind, self.dim, self._vectors, self.params)
        self._dirty = False  # a stored vector changed in place: rebuild before the next search
        self._latest_round = -1

    # ----------------------------------------------------------------- writing
    def add(
        self,
        question: str,
        answer: str,
        vector: Any,
        round: int = -1,  # noqa: A002 - the contract's name
        source: str = "prior",
        rating: float | None = None,
    ) -> int:
        """Remember `answer` to `question` (vector: the question's embedding); return the record id."""
        row = as_unit_rows(vector, self.dim)
        key = question_key(question)
        entry = {"answer": answer, "round": int(round), "source": source, "rating": rating}
        with self._lock:
            self._latest_round = max(self._latest_round, int(round))
            existing = self._by_question.get(key)
            if existing is None:
                rid = len(self._records)
                self._records.append(MemoryRecord(question=question, **entry))
                self._by_question[key] = rid
                self._append_vector(row)
                return rid
            record = self._records[existing]
            if int(round) >= record.round:  # supersede; the old version goes to history
                record.history.append({name: getattr(record, name) for name in entry})
                record.question, record.answer, record.round = question, answer, int(round)
                record.source, record.rating = source, rating
                if float(self._vectors[existing] @ row[0]) < 0.9999:
                    self._vectors[existing] = row[0]
                    self._dirty = True
            else:  # a late write from an earlier round: keep it in history, in round order
                record.history.append(entry)
                record.history.sort(key=lambda version: version["round"])
            return existing

    def _append_vector(self, row: np.ndarray) -> None:
        n = len(self._records)
        if len(self._vectors) < n:  # grow the buffer geometrically
            grown = np.zeros((max(n, 2 * len(self._vectors), 64), self.dim), dtype=np.float32)
            grown[: n - 1] = self._vectors[: n - 1]
            self._vectors = grown
        self._vectors[n - 1] = row[0]
        if needs_ivf_training(self.kind, self._index, n, self.params):
            self._dirty = True
        elif not self._dirty:
            self._index.add(row)

    def _ensure_index(self) -> None:
        if self._dirty:
            self._index = build_index(self.kind, self.dim, self._vectors[: len(self._records)], self.params)
            self._dirty = False

    # ----------------------------------------------------------------- reading
    def search(self, vector: Any, k: int = 1, threshold: float | None = 0.7) -> list[MemoryHit]:
        """Up to `k` memories most similar to `vector`, best first, with similarity > `threshold` (None: no cut)."""
        return self.search_many(vector, k, threshold)[0]

    def search_many(self, vectors: Any, k: int = 1, threshold: float | None = 0.7) -> list[list[MemoryHit]]:
        """`search` for each row of `vectors`, in one FAISS call."""
        queries = as_unit_rows(vectors, self.dim)
        with self._lock:
            n = len(self._records)
            if k <= 0 or n == 0:
                return [[] for _ in queries]
            self._ensure_index()
            fetch = min(n, k if self.recency_weight == 0 else max(4 * k, k + 32))
            similarities, ids = self._index.search(queries, fetch)
            return [self._hits(sims, rows, k, threshold) for sims, rows in zip(similarities, ids, strict=True)]

    def _hits(self, sims: np.ndarray, rows: np.ndarray, k: int, threshold: float | None) -> list[MemoryHit]:
        scored = []
        for sim, rid in zip(sims.tolist(), rows.tolist(), strict=True):
            if rid < 0 or (threshold is not None and not sim > threshold):
                continue
            record = self._records[rid]
            score = sim
            if self.recency_weight:
                age = max(0, self._latest_round - record.round)
                score += self.recency_weight * 0.5 ** (age / self.recency_half_life)
            scored.append((score, rid, sim, record))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [
            MemoryHit(r.question, r.answer, float(min(1.0, sim)), r.round, r.source, r.rating)
            for _score, _rid, sim, r in scored[:k]
        ]

    def get(self, question: str) -> MemoryRecord | None:
        """The record of exactly this question (whitespace-insensitive), or None."""
        with self._lock:
            rid = self._by_question.get(question_key(question))
            return None if rid is None else _copy(self._records[rid])

    def records(self) -> list[MemoryRecord]:
        """A copy of every record, in id order."""
        with self._lock:
            return [_copy(record) for record in self._records]

    def vectors(self) -> np.ndarray:
        """A copy of the stored (normalised) question vectors, row i belonging to record i."""
        with self._lock:
            return self._vectors[: len(self._records)].copy()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def index_type(self) -> str:
        """The FAISS class actually serving searches (an "ivf" store is exact until it is big enough)."""
        with self._lock:
            self._ensure_index()
            return type(self._index).__name__

    # ----------------------------------------------------------------- state and persistence
    def state_dict(self) -> StoreState:
        """A consistent copy of the whole store (a clone of the FAISS index, copies of the records)."""
        with self._lock:
            self._ensure_index()
            return {
                "dim": self.dim,
                "index": self.kind,
                "options": {
                    "recency_weight": self.recency_weight,
                    "recency_half_life": self.recency_half_life,
                    **dataclasses.asdict(self.params),
                },
                "faiss_index": faiss.clone_index(self._index),
                "records": [_copy(record) for record in self._records],
            }

    @classmethod
    def from_state_dict(cls, state: StoreState) -> MemoryStore:
        """A store holding `state` (from `state_dict` or `memory.store_files.read_state`); it takes over the index."""
        options, index, records = state["options"], state["faiss_index"], list(state["records"])
        if index.d != state["dim"] or index.ntotal != len(records):
            raise ValueError(
                f"index holds {index.ntotal} vectors of dimension {index.d}, "
                f"state says {len(records)} records of dimension {state['dim']}"
            )
        store = cls(
            int(state["dim"]),
            state["index"],
            recency_weight=float(options["recency_weight"]),
            recency_half_life=float(options["recency_half_life"]),
            **{k: int(v) for k, v in options.items() if k in IndexParams.__dataclass_fields__},
        )
        apply_search_params(index, store.params)
        if index.ntotal:
            store._vectors = index.reconstruct_n(0, index.ntotal).astype(np.float32)
        store._index = index
        store._records = records
        store._by_question = {question_key(r.question): i for i, r in enumerate(records)}
        store._latest_round = max([-1, *(r.round for r in records)])
        return store

    def save(self, folder: str | Path) -> Path:
        """Atomically write index + records into `folder` (the last complete snapshot survives any crash)."""
        state = self.state_dict()
        return atomic.publish_dir(folder, lambda target: store_files.write_state(state, target))

    @classmethod
    def load(cls, folder: str | Path) -> MemoryStore:
        """Read the live snapshot of `folder`; `SnapshotError` (one line, naming the file) if it is inconsistent."""
        return cls.from_state_dict(store_files.read_state(atomic.current_dir(folder)))


def _copy(record: MemoryRecord) -> MemoryRecord:
    return dataclasses.replace(record, history=[dict(v) for v in record.history])
