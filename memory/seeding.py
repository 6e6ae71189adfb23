"""Fill agents' stores with their prior memories, embedding every distinct question once, in one batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from memory.base import Embedder
from memory.store import MemoryStore


async def fill_stores(
    stores: Mapping[int, MemoryStore], embedder: Embedder, priors: Mapping[int, Sequence[tuple[str, str, str]]]
) -> None:
    """Add `priors[agent]` (question, answer, label) to `stores[agent]` as round −1, source "prior"."""
    questions = list(dict.fromkeys(q for agent in priors for q, _answer, _label in priors[agent]))
    if not questions:
        return
    vectors = dict(zip(questions, await embedder.embed(questions), strict=True))
    for agent, items in priors.items():
        for question, answer, _label in items:
            stores[agent].add(question, answer, vectors[question], round=-1, source="prior")
