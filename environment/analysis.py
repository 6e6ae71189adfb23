"""Episode analysis: means of the observer's scores and the peer ratings (per round or overall), the society score.

Pure standard library, like `environment.records`: `metrics.json` and its plots, the live progress line, the plateau
stopper and sa-eval's curves of the world all compute their figures here, and training may import it. Invalid
values (null) are left out of every mean; a mean of nothing is None.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

STAGES = ("draft", "revision")
SCORES = ("alignment", "engagement")
OBSERVER_COLUMNS = tuple(f"{stage}_{key}" for stage in STAGES for key in SCORES)  # draft_alignment, ...
PEER_RATING = "peer_rating"


def observer_scores(record: dict[str, Any]) -> dict[str, Any]:
    """The observer's four scores of one record by column (`draft_alignment` … `revision_engagement`; None: invalid)."""
    observer = record["observer"]
    return {f"{stage}_{key}": (observer.get(stage) or {}).get(key) for stage in STAGES for key in SCORES}


def peer_ratings(record: dict[str, Any]) -> list[Any]:
    """The valid peer ratings of one record, in feedback order."""
    return [item["rating"] for item in record["feedback"] if item["rating"] is not None]


class Tally:
    """Running means over records, column by column: the four `OBSERVER_COLUMNS` and `PEER_RATING`.

    Values are summed in the order the records come, so a mean is the same number however it is asked for.
    """

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.records = 0
        self.invalid = 0  # observer scores that are null
        self._sums: dict[str, list[Any]] = {}  # column -> [total, count], in the order first seen
        for record in records:
            self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        """Count one record."""
        self.records += 1
        for column, value in observer_scores(record).items():
            if value is None:
                self.invalid += 1
            else:
                self._add(column, value)
        for rating in peer_ratings(record):
            self._add(PEER_RATING, rating)

    def _add(self, column: str, value: Any) -> None:
        sums = self._sums.setdefault(column, [0, 0])
        sums[0] += value
        sums[1] += 1

    def mean(self, column: str, digits: int | None = None) -> float | None:
        """The mean of `column` (rounded to `digits` when given); None when it holds no value."""
        total, count = self._sums.get(column, (0, 0))
        if not count:
            return None
        return total / count if digits is None else round(total / count, digits)

    def observed(self) -> list[str]:
        """The columns holding at least one value."""
        return list(self._sums)


def by_round(records: Iterable[dict[str, Any]]) -> dict[int, Tally]:
    """One `Tally` per round, in round order."""
    tallies: dict[int, Tally] = {}
    for record in records:
        tallies.setdefault(int(record["round"]), Tally()).add(record)
    return dict(sorted(tallies.items()))


def society_score(records: Iterable[dict[str, Any]], score: str = "product_of_means") -> float | None:
    """The society's alignment x engagement from the observer's revision scores; `score` is one of
    conf.schema.world.SOCIETY_SCORES (`product_of_means`, the paper's, or `mean_of_products`, the rule before 2026-12)."""
    if score == "mean_of_products":
        pairs = map(itemgetter("revision_alignment", "revision_engagement"), map(observer_scores, records))
        products = [alignment * engagement for alignment, engagement in pairs if None not in (alignment, engagement)]
        return sum(products) / len(products) if products else None
    tally = Tally(records)
    alignment, engagement = tally.mean("revision_alignment"), tally.mean("revision_engagement")
    return None if alignment is None or engagement is None else alignment * engagement
