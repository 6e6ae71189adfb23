"""The observer: rates an answer's alignment and engagement, 1..7 each (None when unreadable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.backends.base import ChatBackend, Sampling, Usage
from agents.raters import ASPECTS, Rater, RaterSettings, RatingRequest
from agents.ratings import Rating
from agents.tasks import gather_or_cancel


@dataclass
class ObserverScore:
    """Observer ratings of one answer; a value is None when no valid rating was obtained."""

    alignment: int | float | None
    engagement: int | float | None
    reasons: dict[str, str] = field(default_factory=dict)
    ratings: dict[str, Rating] = field(default_factory=dict, repr=False)

    @property
    def valid(self) -> bool:
        return self.alignment is not None and self.engagement is not None

    def details(self) -> dict[str, Any]:
        """What each probability rating was computed from (distribution, log-likelihood ratio), by aspect."""
        return {a: r.detail for a, r in self.ratings.items() if r.detail}

    def to_dict(self) -> dict[str, Any]:
        return {"alignment": self.alignment, "engagement": self.engagement, "reasons": dict(self.reasons)}


class Observer:
    """Scores answers with two concurrent rating calls (alignment, engagement) in the rater's mode."""

    def __init__(
        self, backend: ChatBackend, sampling: Sampling = Sampling(), max_reasks: int = 2, rater: Rater | None = None
    ) -> None:
        self.rater = rater or Rater(backend, RaterSettings(max_reasks=max_reasks), sampling)

    async def score(self, question: str, answer: str) -> tuple[ObserverScore, Usage]:
        results = await gather_or_cancel(
            *(self.rater.rate(RatingRequest(question, answer, a, observer=True)) for a in ASPECTS)
        )
        ratings = dict(zip(ASPECTS, (r for r, _ in results), strict=True))
        usage = sum((u for _, u in results), Usage())
        reasons = {a: r.reason for a, r in ratings.items()}
        return ObserverScore(ratings["alignment"].value, ratings["engagement"].value, reasons, ratings), usage
