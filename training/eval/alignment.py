"""The observer's alignment rating of answers, shared by the rater check (`tasks=[rater]`) and the judge's rater
modes (`judge.rater_mode`): each (question, answer) rated with sa-simulate's observer prompt on its 1-7 scale."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def outcome(better: float | None, worse: float | None) -> str | None:
    """win | loss | tie for the better answer's rating against the worse one's; None when either is unreadable."""
    if better is None or worse is None:
        return None
    return "win" if better > worse else "loss" if better < worse else "tie"


async def gather_with_progress(jobs: Sequence[Awaitable[T]], bar: Callable[[int], Any] | None = None) -> list[T]:
    """`asyncio.gather` of all jobs at once (the backend batches them), ticking `bar(1)` as each one finishes."""

    async def one(job: Awaitable[T]) -> T:
        result = await job
        if bar is not None:
            bar(1)
        return result

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def rate_alignment(
    rater: Any, answers: Sequence[tuple[str, str]], tick: Callable[[int], Any] | None = None
) -> list[tuple[Any, Any]]:
    """The observer's alignment rating (sa-simulate's observer prompt, on its 1-7 scale) of each (question, answer),
    all concurrently: one (Rating, Usage) each. Shared by the rater check and the judge's rater modes."""
    from agents.raters import RatingRequest

    return await gather_with_progress([rater.rate(RatingRequest(q, a, "alignment", observer=True)) for q, a in answers],
                                      tick)  # fmt: skip
