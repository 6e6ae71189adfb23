"""The observer: rates an answer's alignment and engagement, 1..7 each (None when unreadable)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from agents import prompts
from agents.backends.base import ChatBackend, Sampling, Usage
from agents.ratings import Rating, ask_rating


@dataclass
class ObserverScore:
    """Observer ratings of one answer; a value is None when no valid rating was obtained."""

    alignment: int | None
    engagement: int | None
    reasons: dict[str, str] = field(default_factory=dict)
    ratings: dict[str, Rating] = field(default_factory=dict, repr=False)

    @property
    def valid(self) -> bool:
        return self.alignment is not None and self.engagement is not None

    def to_dict(self) -> dict[str, Any]:
        return {"alignment": self.alignment, "engagement": self.engagement, "reasons": dict(self.reasons)}


class Observer:
    """Scores answers with two concurrent rating calls (alignment, engagement)."""

    def __init__(self, backend: ChatBackend, sampling: Sampling = Sampling(), max_reasks: int = 2) -> None:
        self.backend = backend
        self.sampling = sampling
        self.max_reasks = max_reasks

    @property
    def model(self) -> str:
        return self.backend.model

    async def score(self, question: str, answer: str) -> tuple[ObserverScore, Usage]:
        aspects = ("alignment", "engagement")
        results = await asyncio.gather(
            *(
                ask_rating(self.backend, prompts.observer_messages(a, question, answer), self.sampling, self.max_reasks)
                for a in aspects
            )
        )
        ratings = dict(zip(aspects, (r for r, _ in results), strict=True))
        usage = sum((u for _, u in results), Usage())
        score = ObserverScore(
            alignment=ratings["alignment"].value,
            engagement=ratings["engagement"].value,
            reasons={a: r.reason for a, r in ratings.items()},
            ratings=ratings,
        )
        return score, usage
