"""Stopping rules: a round count, a plateau of mean alignment × engagement, a budget of calls, tokens or cost.

Round r is complete when every agent's round-r record is stored (rounds complete in order, since an agent's turn in
round r+1 starts after its own round-r turn). The society score of a round is the paper's mean alignment x mean
engagement (or the mean of per-agent products, `plateau.score`). Plateau: stop after round r when the best society
score of the last `window` rounds is not above the best before them by more than `epsilon`. Budget (`stopping.budget`,
the run's only one): no new turn starts once the world's usage total (every backend and embedder of this process plus
the stored episodes of earlier ones, agents.backends.usage.UsageTotal) reaches a limit (checked after every call);
turns already in flight finish, so the total can pass the limit by their remaining calls.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import conf.schema.world
from agents.backends.usage import UsageMeter, UsageTotal
from environment.analysis import society_score


class Budget(conf.schema.world.Budget):
    """`stopping.budget` (its fields from the schema): upper bounds on the whole run's calls, tokens and cost (USD);
    None = unlimited."""

    def spent(self, usage: UsageMeter | UsageTotal) -> str | None:
        """Why `usage` has reached this budget, or None."""
        if self.max_calls is not None and usage.calls >= self.max_calls:
            return f"budget: {usage.calls} calls ≥ max_calls {self.max_calls}"
        if self.max_tokens is not None and usage.tokens >= self.max_tokens:
            return f"budget: {usage.tokens} tokens ≥ max_tokens {self.max_tokens}"
        if self.max_cost is not None and usage.cost_usd >= self.max_cost:
            return f"budget: cost {usage.cost_usd:.4f} ≥ max_cost {self.max_cost}"
        return None


@dataclass
class Stopper:
    """Watches committed records and usage; `reason` is set once a rule fires."""

    n_agents: int
    rounds: int
    plateau: conf.schema.world.Plateau = field(default_factory=conf.schema.world.Plateau)  # window 0: the rule is off
    budget: Budget = field(default_factory=Budget)
    reason: str | None = None
    stopped_after_round: int | None = None
    scores: dict[int, float | None] = field(default_factory=dict)
    _by_round: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def observe(self, record: dict[str, Any]) -> None:
        """Count a committed record; fire the plateau rule when its round completes."""
        round_ = int(record["round"])
        bucket = self._by_round[round_]
        bucket.append(record)
        if len(bucket) == self.n_agents:
            self.scores[round_] = society_score(bucket, self.plateau.score)
            self._check_plateau()

    def completed_rounds(self) -> list[int]:
        return sorted(self.scores)

    def _check_plateau(self) -> None:
        window, epsilon = self.plateau.window, self.plateau.epsilon
        if self.reason or window <= 0:
            return
        # the scores of the rounds completed consecutively from 0
        done = [self.scores[r] for r in itertools.takewhile(self.scores.__contains__, range(self.rounds))]
        n = len(done)
        if n <= window:
            return
        before = [s for s in done[: n - window] if s is not None]
        recent = [s for s in done[n - window :] if s is not None]
        if before and (not recent or max(recent) <= max(before) + epsilon):
            self.reason = f"plateau: alignment×engagement gained ≤ {epsilon} over the last {window} rounds"
            self.stopped_after_round = n - 1

    def check_budget(self, usage: UsageMeter | UsageTotal) -> None:
        if not self.reason:
            self.reason = self.budget.spent(usage)

    def finish_reason(self) -> str:
        if self.reason:
            return self.reason
        if len(self.scores) >= self.rounds:
            return f"rounds: all {self.rounds} rounds complete"
        return "incomplete"
