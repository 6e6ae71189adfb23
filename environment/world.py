"""World state: the layout, question schedule, roles, per-agent memories and the shared embedding cache.

Roles are duck-typed to the agents/ contracts: an agent has `draft`, `feedback`, `revise`; the observer has `score`.
Memory semantics: an agent's memory changes only when one of its own turns is committed (the record is written
first, then the revision is remembered, with no await in between), so memory always equals seed priors + the
revisions in `episodes.jsonl`. Peers rate with whatever memory they have at that moment (they may be a round ahead
or behind: agents never wait for the slowest agent of a round).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from environment.grid import Layout, pick_raters
from environment.questions import QuestionSchedule
from memory.base import Embedder, MemoryHit

log = logging.getLogger(__name__)


@dataclass
class World:
    """Everything one Back-Scatter turn needs."""

    world_id: str
    seed: int
    layout: Layout
    schedule: QuestionSchedule
    agents: list[Any]  # SocialAgent per agent id
    agent_models: list[str]
    observer: Any
    observer_model: str
    embedder: Embedder  # the shared EmbeddingCache
    memories: dict[int, Any]  # agent id → MemoryStore
    k: int = 4
    global_fraction: float = 0.0
    circle_top_up: bool = False  # the rule before 2026-12: a short circle is filled up from the whole grid
    memory_top_k: int = 1
    memory_threshold: float = 0.5
    rounds: int = 2
    prefetch_failures: int = 0
    _vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _round_batches: dict[int, asyncio.Future[None]] = field(default_factory=dict, repr=False)

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    async def question_vector(self, text: str, round_: int | None = None) -> np.ndarray:
        """The question's embedding (once per world, through the shared cache).

        With `round_`, the whole round's questions are embedded in one batch (shared by every turn of the round) and
        the next round's batch is started in the background, so a turn rarely waits for the embedder. A batch that
        failed (after the embedder's own retries) is not re-raised to every turn: each turn then embeds its own
        question, through the same retry stack.
        """
        if round_ is not None and text not in self._vectors:
            batch = self.prefetch_round(round_)
            self.prefetch_round(round_ + 1)
            if batch is not None:
                await asyncio.shield(batch)
        vector = self._vectors.get(text)
        if vector is None:
            vector = (await self.embedder.embed([text]))[0]
            self._vectors[text] = vector
        return vector

    def prefetch_round(self, round_: int) -> asyncio.Future[None] | None:
        """Start (once) embedding every question of `round_` in one batch; None past the last round."""
        if round_ >= self.rounds:
            return None
        task = self._round_batches.get(round_)
        if task is None:
            texts = dict.fromkeys(self.schedule.question(round_, a).text for a in range(self.n_agents))
            task = asyncio.ensure_future(self._embed_missing([t for t in texts if t not in self._vectors]))
            task.add_done_callback(_retrieve)  # a failed prefetch nobody awaited must not warn at exit
            self._round_batches[round_] = task
        return task

    async def _embed_missing(self, texts: list[str]) -> None:
        """Embed a round's batch; a failure is counted and logged, never raised (turns embed their own question)."""
        if not texts:
            return
        try:
            vectors = await self.embedder.embed(texts)
        except Exception as error:  # noqa: BLE001 - each turn retries its own question
            self.prefetch_failures += 1
            log.warning("embedding a round's %d questions failed (%s); each turn embeds its own", len(texts),
                        f"{type(error).__name__}: {error}"[:200])  # fmt: skip
            return
        self._vectors.update(zip(texts, vectors, strict=True))

    def recall(self, agent: int, vector: np.ndarray) -> list[MemoryHit]:
        return self.memories[agent].search(vector, k=self.memory_top_k, threshold=self.memory_threshold)

    def raters(self, agent: int, round_: int) -> list[int]:
        rng = random.Random(f"raters:{self.seed}:{self.world_id}:{round_}:{agent}")
        return pick_raters(self.layout, agent, round_, self.k, self.global_fraction, rng, self.circle_top_up)

    def remember(self, record: dict[str, Any], vector: np.ndarray) -> None:
        """Write a committed turn's revision into its agent's memory (latest answer wins, history kept)."""
        rating = (record["observer"].get("revision") or {}).get("alignment")
        self.memories[int(record["agent_id"])].add(
            record["question"], record["revision"]["text"], vector, round=int(record["round"]), source="revision",
            rating=rating,
        )  # fmt: skip


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
