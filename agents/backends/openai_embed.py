"""An OpenAI-compatible `/v1/embeddings` embedder (memory.base.Embedder), through the same wrapper stack.

Texts are split into batches of `batch_size`, sent concurrently (the stack's concurrency cap and throttle apply),
and the vectors are L2-normalised float32. `dim` is taken from config, or learnt from the first response.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agents.backends.base import ChatBackend
from agents.tasks import gather_or_cancel
from conf.errors import UserError


class OpenAIEmbedder:
    """Embedder over a wrapped OpenAIBackend (anything whose `embed(texts)` returns vectors in `extra`)."""

    def __init__(self, backend: ChatBackend, dim: int | None = None, batch_size: int = 64) -> None:
        self.backend = backend
        self.model = backend.model
        self.batch_size = max(1, batch_size)
        self._dim = dim

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise UserError("the embedding size is unknown before the first call; set embedder.dim in config")
        return self._dim

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self.backend!r}, dim={self._dim})"

    async def _batch(self, texts: Sequence[str]) -> np.ndarray:
        completion = await self.backend.embed(texts)  # type: ignore[attr-defined]
        vectors = np.asarray(completion.extra["vectors"], dtype=np.float32)
        if vectors.shape[0] != len(texts):
            raise UserError(
                f"the embeddings endpoint returned {vectors.shape[0]} vectors for {len(texts)} texts; "
                "check embedder.base_url"
            )
        return vectors

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        chunks = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        vectors = np.concatenate(await gather_or_cancel(*(self._batch(c) for c in chunks)))
        if self._dim is None:
            self._dim = int(vectors.shape[1])
        elif vectors.shape[1] != self._dim:
            raise UserError(
                f"the embeddings endpoint returned {vectors.shape[1]}-d vectors but embedder.dim={self._dim}; "
                "fix embedder.dim"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    async def aclose(self) -> None:
        await self.backend.aclose()
