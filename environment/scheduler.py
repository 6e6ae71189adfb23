"""The async event loop: one task per agent runs its turns round after round, never waiting for other agents.

An agent's round r+1 turn starts right after its own round-r turn is committed. `max_inflight` caps concurrent
turns (0: no cap; calls are capped by the backends' own limits). When a stopping rule fires, no new turn starts and
turns already in flight finish and are stored (their calls are paid for). A turn that fails (after the backends'
retries) ends its agent's chain; the other agents go on, and the first failure is raised at the end. A committed turn is: record appended (one line,
flushed), then the revision remembered, then counted by stopping and progress — all without awaiting, so a kill at
any moment leaves memory rebuildable from the file. Finished (world, round, agent) turns are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from agents.backends.usage import UsageTotal
from environment.backscatter import back_scatter
from environment.episodes import EpisodeStore
from environment.progress import Progress
from environment.stopping import Stopper
from environment.world import World


async def run_world(
    world: World,
    store: EpisodeStore,
    stopper: Stopper,
    usage: UsageTotal,
    progress: Progress | None = None,
    max_inflight: int = 0,
    on_commit: Callable[[dict[str, Any]], None] | None = None,
    turn: Callable[[World, int, int], Awaitable[dict[str, Any]]] = back_scatter,
) -> None:
    """Run every missing turn of rounds 0..world.rounds-1 until done or a stopping rule fires."""
    gate = asyncio.Semaphore(max_inflight) if max_inflight > 0 else contextlib.nullcontext()
    stop = asyncio.Event()

    def spent() -> None:  # a budget stops new turns as soon as a call crosses it, not only at the next commit
        stopper.check_budget(usage)
        if stopper.reason:
            stop.set()

    def commit(record: dict[str, Any], vector: Any) -> None:
        store.append(record)
        world.remember(record, vector)
        stopper.observe(record)
        if progress is not None:
            progress.update(record)
        if on_commit is not None:
            on_commit(record)
        spent()

    async def one(agent: int, round_: int) -> None:
        async with gate:
            if stop.is_set():  # stopped while this turn waited for a slot: it never started
                return
            record = await turn(world, agent, round_)
        commit(record, await world.question_vector(record["question"]))

    async def chain(agent: int) -> None:
        for round_ in range(world.rounds):
            if (world.world_id, round_, agent) in store.keys:
                continue
            if stop.is_set():
                return
            await one(agent, round_)

    async def ticker() -> None:
        while progress is not None:
            await asyncio.sleep(progress.interval)
            spent()
            progress.refresh()

    spent()
    if stop.is_set():
        return
    usage.on_spend = spent
    chains = [asyncio.create_task(chain(agent)) for agent in range(world.n_agents)]
    tick = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(*chains, return_exceptions=True)
    finally:
        for task in (*chains, tick):
            task.cancel()
        await asyncio.gather(*chains, tick, return_exceptions=True)
        usage.on_spend = None
    failures = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
    if failures:
        raise failures[0]
