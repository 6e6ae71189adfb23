"""A shared embedding cache: one embedding per distinct text per world, however many agents or calls ask.

`EmbeddingCache(inner)` is itself an Embedder. Within a batch duplicates are embedded once; across calls a text seen
before is served from the cache; texts that another coroutine is embedding right now are awaited, not embedded
twice; and misses asked for concurrently (in one event-loop iteration) go to the inner embedder as one batch. Counters: `requested` (texts asked for), `embedded` (texts sent to the inner embedder), `inner_calls`
(batches sent to the inner embedder), `hits` (texts served without embedding).
`write_to` / `read_from` put the cache into a folder and read it back (`memory.snapshot` writes it into every world
snapshot and `load_cache` reads it back). sa-simulate's resume does not read it back: a resumed world starts
with an empty cache and embeds its priors (one batch) and each distinct question of the stored episodes (one batch)
again.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memory.base import Embedder
from memory.errors import SnapshotError

VECTORS_FILE, TEXTS_FILE = "vectors.npy", "texts.json"
Batch = list[tuple[str, asyncio.Future[np.ndarray]]]  # texts sent to the inner embedder together, and their futures


class EmbeddingCache:
    """Wraps any Embedder; dedups within a batch, across calls and across concurrent callers.

    Misses are not sent one call each: texts that coroutines of one event loop ask for in the same loop iteration
    (e.g. every agent drafting at the start of a round) are gathered and sent to the inner embedder as one batch.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dim = int(inner.dim)
        self._vectors: dict[str, np.ndarray] = {}
        self._pending: dict[str, asyncio.Future[np.ndarray]] = {}
        self._queues: dict[asyncio.AbstractEventLoop, Batch] = {}
        self._flushers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._lock = threading.Lock()
        self.requested = self.embedded = self.inner_calls = self.hits = 0

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dim), L2-normalised, in the order asked."""
        texts = list(texts)
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[np.ndarray]] = []
        with self._lock:
            self.requested += len(texts)
            queued = 0
            for text in dict.fromkeys(texts):
                if text in self._vectors:
                    continue
                future = self._pending.get(text)
                if future is None or future.get_loop() is not loop:
                    future = loop.create_future()
                    self._pending[text] = future
                    self._queues.setdefault(loop, []).append((text, future))
                    queued += 1
                waits.append(future)
            self.hits += len(texts) - queued
            if queued and loop not in self._flushers:
                self._flushers[loop] = loop.create_task(self._flush(loop))
        for future in waits:
            await asyncio.shield(future)  # a cancelled caller must not cancel a batch others wait for
        with self._lock:  # (0, dim) for no texts
            return np.array([self._vectors[text] for text in texts], dtype=np.float32).reshape(-1, self.dim)

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send everything queued on `loop` to the inner embedder as one batch; resolve the waiting futures."""
        try:
            await asyncio.sleep(0)  # let coroutines woken in this loop iteration add their texts too
        finally:
            with self._lock:
                batch = self._queues.pop(loop, [])
                self._flushers.pop(loop, None)
                self.embedded += len(batch)
                self.inner_calls += bool(batch)
        try:
            texts = [text for text, _ in batch]
            vectors = np.asarray(await self.inner.embed(texts), dtype=np.float32) if batch else None
            if batch and vectors.shape != (len(texts), self.dim):
                raise ValueError(f"embedder returned shape {vectors.shape} for {len(texts)} texts of dim {self.dim}")
        except BaseException as error:
            self._settle(batch, None, error)
            if not isinstance(error, Exception):
                raise
            return
        self._settle(batch, vectors, None)

    def _settle(self, batch: Batch, vectors: np.ndarray | None, error: BaseException | None) -> None:
        with self._lock:
            for i, (text, future) in enumerate(batch):
                if vectors is not None:
                    self._vectors[text] = vectors[i]
                if self._pending.get(text) is future:
                    del self._pending[text]
                if future.done():
                    continue
                if vectors is not None:
                    future.set_result(vectors[i])
                elif isinstance(error, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(error)
                    future.exception()  # mark retrieved: every waiting caller re-raises it

    def __contains__(self, text: object) -> bool:
        with self._lock:
            return text in self._vectors

    def __len__(self) -> int:
        with self._lock:
            return len(self._vectors)

    def stats(self) -> dict[str, int]:
        """The counters, plus how many distinct texts are cached."""
        with self._lock:
            counters = {name: getattr(self, name) for name in ("requested", "embedded", "inner_calls", "hits")}
            return {**counters, "cached": len(self._vectors)}

    # ----------------------------------------------------------------- persistence
    def write_to(self, folder: Path) -> None:
        """Write the cached vectors into `folder` (callers publish it atomically, e.g. `memory.snapshot`)."""
        with self._lock:
            texts = list(self._vectors)
            matrix = np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        np.save(folder / VECTORS_FILE, matrix.astype(np.float32), allow_pickle=False)
        (folder / TEXTS_FILE).write_text(json.dumps({"dim": self.dim, "texts": texts}, ensure_ascii=False), "utf-8")

    def read_from(self, folder: Path) -> None:
        """Add the vectors written by `write_to` (checked against each other and this cache's dim)."""
        texts_path, vectors_path = folder / TEXTS_FILE, folder / VECTORS_FILE
        texts = _read(texts_path, lambda: list(json.loads(texts_path.read_text("utf-8"))["texts"]), KeyError, TypeError)
        matrix = _read(vectors_path, lambda: np.load(vectors_path, allow_pickle=False), OSError, EOFError)
        if matrix.shape != (len(texts), self.dim):
            raise SnapshotError(
                vectors_path,
                f"shape {matrix.shape} does not match {len(texts)} texts of dim {self.dim} in {TEXTS_FILE}",
            )
        with self._lock:
            for text, vector in zip(texts, matrix.astype(np.float32), strict=True):
                self._vectors.setdefault(text, vector)


def _read(path: Path, read: Callable[[], Any], *errors: type[Exception]) -> Any:
    """`read()` of a cache file; a SnapshotError naming `path` when it is missing or unreadable (a ValueError or one of
    `errors`)."""
    try:
        return read()
    except FileNotFoundError:
        raise SnapshotError(path, "missing from the snapshot") from None
    except (ValueError, *errors) as error:
        raise SnapshotError(path, f"unreadable ({error}); truncated?") from None
