"""The async event loop and one Back-Scatter turn, with fake roles that sleep (no model): ordering, overlap, caps."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.backends.base import Usage
from agents.backends.usage import UsageMeter, UsageTotal
from agents.ratings import Rating
from environment.backscatter import back_scatter
from environment.episodes import EpisodeStore
from environment.grid import Grid, Layout
from environment.questions import QuestionSchedule, load_questions
from environment.records import validate_record
from environment.scheduler import run_world
from environment.stopping import Budget, Stopper
from environment.world import World
from memory.cache import EmbeddingCache
from memory.store import MemoryStore
from tests.test_environment_episodes import make_record

DIM = 8


class Calls:
    """Start/end times of every fake call, by name."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}

    async def timed(self, name: str, seconds: float) -> None:
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        self.spans[name] = (start, time.perf_counter())


class FakeAgent:
    def __init__(self, agent_id: int, calls: Calls, latency: float) -> None:
        self.agent_id, self.calls, self.latency = agent_id, calls, latency

    async def draft(self, question: str, memories: Any) -> tuple[str, Usage]:
        await self.calls.timed(f"draft-{self.agent_id}", self.latency)
        return f"draft by {self.agent_id}", Usage(calls=1)

    async def feedback(self, question: str, answer: str, memories: Any) -> tuple[Rating, Usage]:
        await self.calls.timed(f"feedback-{self.agent_id}", self.latency)
        return Rating(4 + self.agent_id % 3, "ok", True), Usage(calls=1)

    async def revise(self, question: str, draft: str, feedback: Any) -> tuple[str, Usage]:
        await self.calls.timed(f"revise-{self.agent_id}", self.latency)
        return f"revision by {self.agent_id}", Usage(calls=1)


class FakeScore:
    def __init__(self, value: int) -> None:
        self.alignment, self.engagement, self.reasons = value, value, {"alignment": "a", "engagement": "e"}


class FakeObserver:
    def __init__(self, calls: Calls, latency: float) -> None:
        self.calls, self.latency = calls, latency

    async def score(self, question: str, answer: str) -> tuple[FakeScore, Usage]:
        await self.calls.timed(f"observe-{answer.split()[0]}", self.latency)
        return FakeScore(5 if answer.startswith("revision") else 3), Usage(calls=2)


class HashEmbedder:
    dim = DIM

    async def embed(self, texts: list[str]) -> np.ndarray:
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: DIM * 4], dtype=np.uint32) for t in texts]
        matrix = np.stack(rows).astype(np.float32) + 1.0
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def fake_world(size: int = 3, rounds: int = 2, latency: float = 0.02, k: int = 4) -> tuple[World, Calls]:
    calls = Calls()
    n = size * size
    world = World(
        world_id="w", seed=0, layout=Layout(Grid(size, 1.0, torus=True)),
        schedule=QuestionSchedule(load_questions("builtin"), n, 0, "w"),
        agents=[FakeAgent(a, calls, latency) for a in range(n)], agent_models=["fake"] * n,
        observer=FakeObserver(calls, latency), observer_model="fake-observer", embedder=HashEmbedder(),
        memories={a: MemoryStore(DIM) for a in range(n)}, k=k, rounds=rounds,
    )  # fmt: skip
    return world, calls


def test_independent_calls_of_a_turn_run_together() -> None:
    world, calls = fake_world(latency=0.05)
    record = asyncio.run(back_scatter(world, agent=4, round_=0))
    validate_record(record)
    assert sorted(f["peer_id"] for f in record["feedback"]) == [1, 3, 5, 7]
    spans = calls.spans
    independent = [spans[f"feedback-{p}"] for p in (1, 3, 5, 7)] + [spans["observe-draft"]]
    assert max(start for start, _ in independent) < min(end for _, end in independent)  # all overlap
    assert spans["draft-4"][1] <= min(start for start, _ in independent)
    assert spans["revise-4"][0] >= max(spans[f"feedback-{p}"][1] for p in (1, 3, 5, 7))
    assert spans["observe-revision"][0] >= spans["revise-4"][1]
    assert record["usage"]["calls"] == 1 + 4 + 1 + 2 + 2
    assert record["observer"]["draft"]["alignment"] == 3 and record["observer"]["revision"]["alignment"] == 5


def run(world: World, tmp_path: Path, turn: Any, stopper: Stopper | None = None, max_inflight: int = 0) -> EpisodeStore:
    store = EpisodeStore(tmp_path / "episodes.jsonl").open()
    stopper = stopper or Stopper(world.n_agents, world.rounds)
    asyncio.run(run_world(world, store, stopper, UsageTotal(), max_inflight=max_inflight, turn=turn))
    store.close()
    return store


def test_an_agent_never_waits_for_the_slowest_agent_of_a_round(tmp_path: Path) -> None:
    world, _ = fake_world(size=2, rounds=3)
    spans: dict[tuple[int, int], tuple[float, float]] = {}

    async def turn(w: World, agent: int, round_: int) -> dict[str, Any]:
        start = time.perf_counter()
        await asyncio.sleep(0.3 if agent == 0 else 0.01)
        spans[agent, round_] = (start, time.perf_counter())
        return make_record(round_, agent)

    store = run(world, tmp_path, turn)
    assert store.keys == {("w", r, a) for r in range(3) for a in range(4)}
    for agent in range(4):
        for r in range(2):
            assert spans[agent, r + 1][0] >= spans[agent, r][1]  # own previous turn first
    assert spans[1, 2][0] < spans[0, 0][1]  # agent 1 is in round 2 before agent 0 finished round 0


def test_in_flight_cap_bounds_concurrent_turns(tmp_path: Path) -> None:
    world, _ = fake_world(size=3, rounds=2)
    active, peak = 0, 0

    async def turn(w: World, agent: int, round_: int) -> dict[str, Any]:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return make_record(round_, agent)

    store = run(world, tmp_path, turn, max_inflight=3)
    assert len(store) == 18 and peak == 3


def test_resume_skips_stored_turns_and_redoes_the_rest(tmp_path: Path) -> None:
    world, _ = fake_world(size=2, rounds=2)
    path = tmp_path / "episodes.jsonl"
    first = EpisodeStore(path).open()
    for agent in (0, 2):
        first.append(make_record(0, agent))
    first.close()
    ran: list[tuple[int, int]] = []

    async def turn(w: World, agent: int, round_: int) -> dict[str, Any]:
        ran.append((agent, round_))
        return make_record(round_, agent)

    store = run(world, tmp_path, turn)
    assert sorted(ran) == [(0, 1), (1, 0), (1, 1), (2, 1), (3, 0), (3, 1)]
    assert len(path.read_bytes().splitlines()) == 8 == len(store.keys)


def test_call_budget_stops_the_world_cleanly(tmp_path: Path) -> None:
    world, _ = fake_world(size=3, rounds=5)
    meter = UsageMeter()
    stopper = Stopper(9, 5, budget=Budget(max_calls=100))
    started_after_stop = 0

    async def turn(w: World, agent: int, round_: int) -> dict[str, Any]:
        nonlocal started_after_stop
        started_after_stop += stopper.reason is not None
        await asyncio.sleep(0.005)
        meter.calls += 10
        return make_record(round_, agent)

    store = EpisodeStore(tmp_path / "episodes.jsonl").open()
    asyncio.run(run_world(world, store, stopper, UsageTotal(meter), turn=turn))
    store.close()
    assert stopper.reason is not None and stopper.reason.startswith("budget:")
    assert started_after_stop == 0
    assert 10 <= len(store) <= 18 < 45  # turns already in flight when the budget was reached may still land


class FailingOnce:
    """An embedder whose first batch fails (a timeout after the retries, say); later calls succeed."""

    dim = DIM

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        if len(self.batches) == 1:
            raise TimeoutError("embedding endpoint timed out")
        return await HashEmbedder().embed(texts)


def test_a_failed_round_prefetch_is_retried_per_turn_not_reraised_to_every_turn(tmp_path: Path) -> None:
    world, _ = fake_world(size=2, rounds=2, latency=0.001)
    embedder = FailingOnce()
    world.embedder = EmbeddingCache(embedder)  # as in a built world: the cache must not keep the failure either
    store = run(world, tmp_path, back_scatter)
    assert len(store) == 8  # every turn of round 0 went through although its batch failed (before: 0 stored)
    assert world.prefetch_failures == 2  # the cache sent rounds 0 and 1 (started together) as the one failed batch
    round0 = {world.schedule.question(0, a).text for a in range(4)}
    assert round0 <= set(embedder.batches[0])
    retried = [t for b in embedder.batches[1:] for t in b if t in round0]
    assert sorted(retried) == sorted(round0)  # the turns embedded their questions again, each once
    assert all(world.memories[a].search(np.ones(DIM), k=1, threshold=-1.0) for a in range(4))  # revisions stored


class Boom(RuntimeError):
    pass


class SlowObserver(FakeObserver):
    """Scores drafts slowly and says whether each draft score finished or was cancelled."""

    def __init__(self, calls: Calls) -> None:
        super().__init__(calls, 0.0)
        self.draft_scores: list[str] = []

    async def score(self, question: str, answer: str) -> tuple[FakeScore, Usage]:
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            self.draft_scores.append("cancelled")
            raise
        return FakeScore(3), Usage(calls=1)


class SlowPeer(FakeAgent):
    async def feedback(self, question: str, answer: str, memories: Any) -> tuple[Rating, Usage]:
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            self.calls.spans[f"cancelled-{self.agent_id}"] = (0.0, 0.0)
            raise
        return Rating(4, "ok", True), Usage(calls=1)


async def _failing_turn(fail: str) -> tuple[set[str], list[str], set[asyncio.Task[Any]]]:
    """Run agent 4's turn with one failing call; what was cancelled and what still runs the moment it raised."""
    world, calls = fake_world(latency=0.001)
    world.observer = observer = SlowObserver(calls)
    if fail == "revise":
        world.agents = [FakeAgent(a, calls, 0.001) for a in range(world.n_agents)]

        async def revise(*_args: Any) -> tuple[str, Usage]:
            raise Boom("revision failed")

        world.agents[4].revise = revise  # type: ignore[method-assign]
    else:  # peer 1 fails at once while peers 3, 5, 7 and the draft score are still running
        world.agents = [SlowPeer(a, calls, 0.001) for a in range(world.n_agents)]

        async def feedback(*_args: Any) -> tuple[Rating, Usage]:
            raise Boom("peer failed")

        world.agents[1].feedback = feedback  # type: ignore[method-assign]
    with pytest.raises(Boom):
        await back_scatter(world, agent=4, round_=0)
    left = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    return set(calls.spans), list(observer.draft_scores), left


def test_a_failed_revision_cancels_and_awaits_the_pending_draft_score() -> None:
    _, draft_score, left = asyncio.run(_failing_turn("revise"))
    assert draft_score == ["cancelled"] and not left  # before: still sleeping when the turn raised


def test_a_failed_peer_rating_cancels_and_awaits_the_other_calls_of_the_turn() -> None:
    spans, draft_score, left = asyncio.run(_failing_turn("peer"))
    assert draft_score == ["cancelled"] and not left  # before: cancelled but not awaited; peers 3, 5, 7 still ran
    assert {name for name in spans if name.startswith("cancelled-")} == {f"cancelled-{p}" for p in (3, 5, 7)}
