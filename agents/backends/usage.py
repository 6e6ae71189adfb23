"""Usage accounting: one meter per backend (calls, retries, failures, tokens, latency, cost) and their live sum.

`UsageAccounting` is the outermost layer of every backend's stack and counts into that backend's `UsageMeter`. A world
adds its meters into one `UsageTotal` (with a meter restored from the episodes of earlier processes); its budget
(`stopping.budget`, environment.stopping) is checked against that total after every call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from agents.backends.base import ChatBackend, Completion
from agents.backends.errors import CallFailed
from agents.backends.wrapper import Call, Wrapper

log = logging.getLogger(__name__)
_NOT_REPORTED = ("prices", "in_flight", "watchers")  # UsageMeter fields that its to_dict leaves out


def price_of(
    prices: Mapping[str, Mapping[str, float]], model: str, prompt_tokens: int, completion_tokens: int
) -> float:
    """USD for the tokens at `model`'s price per 1M prompt/completion tokens (0 for a model without a price)."""
    price = prices.get(model) or {}
    return (
        prompt_tokens * float(price.get("prompt", 0.0)) + completion_tokens * float(price.get("completion", 0.0))
    ) / 1e6


@dataclass(eq=False)
class UsageMeter:
    """Running totals for one backend; `failed` lists every call that finally failed (what, why, how many tries).

    `watchers` are called after every counted call (a world's `UsageTotal` stops new turns at its budget)."""

    model: str = ""
    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> USD per 1M prompt/completion tokens
    requests: int = 0
    calls: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost_usd: float = 0.0
    in_flight: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    watchers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def record(self, completion: Completion) -> None:
        self.requests += 1
        self.calls += completion.calls
        self.retries += completion.retries
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.seconds += completion.seconds
        model = completion.model or self.model
        model = model if model in self.prices else self.model  # a model without its own price: the meter's
        self.cost_usd += price_of(self.prices, model, completion.prompt_tokens, completion.completion_tokens)
        self._spent()

    def record_failure(self, error: CallFailed, seconds: float) -> None:
        self.requests += 1
        self.failures += 1
        self.calls += error.attempts
        self.retries += error.attempts - 1
        self.seconds += seconds
        self.failed.append(
            {"model": error.model, "attempts": error.attempts, "error": f"{type(error.cause).__name__}: {error.cause}"}
        )
        self._spent()

    def add_usage(self, usage: Mapping[str, Any], model: str) -> None:
        """Count a stored episode's usage (a resume: a budget covers the whole run, not just this process).

        A record does not split its usage by role, so all of it is priced at `model` (the record's agent model)."""
        prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        self.calls += int(usage.get("calls", 0))
        self.retries += int(usage.get("retries", 0))
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost_usd += price_of(self.prices, model, prompt, completion)

    def _spent(self) -> None:
        for watcher in self.watchers:
            watcher()

    def to_dict(self) -> dict[str, Any]:
        """The model and every count, in field order (metrics.json's `backends` rows)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_REPORTED}
        data.update(seconds=round(self.seconds, 3), cost_usd=round(self.cost_usd, 6), failed=list(self.failed))
        return data


class UsageTotal:
    """The live sum of several meters (a world: each backend and embedder it uses, plus what earlier processes spent).

    `on_spend` is called after every call counted by any of them."""

    def __init__(self, *meters: UsageMeter) -> None:
        self.meters: list[UsageMeter] = []
        self.on_spend: Callable[[], None] | None = None
        for meter in meters:
            self.add(meter)

    def add(self, meter: UsageMeter) -> None:
        """Count `meter` in the total (once, however often it is added: backends are shared)."""
        if all(m is not meter for m in self.meters):
            self.meters.append(meter)
            meter.watchers.append(self._spent)

    def _spent(self) -> None:
        if self.on_spend is not None:
            self.on_spend()

    def _sum(self, name: str) -> Any:
        return sum(getattr(meter, name) for meter in self.meters)

    calls = property(lambda self: self._sum("calls"))
    retries = property(lambda self: self._sum("retries"))
    tokens = property(lambda self: self._sum("tokens"))
    cost_usd = property(lambda self: self._sum("cost_usd"))
    in_flight = property(lambda self: self._sum("in_flight"))

    def summary(self) -> dict[str, Any]:
        """The run's calls, tokens, retries and cost (USD) as metrics.json reports them."""
        return {"calls": self.calls, "tokens": self.tokens, "retries": self.retries, "cost": round(self.cost_usd, 6)}


class UsageAccounting(Wrapper):
    """Outermost layer: counts calls in flight and records every finished or failed call in the backend's meter."""

    def __init__(self, inner: ChatBackend, meter: UsageMeter) -> None:
        super().__init__(inner)
        self.meter = meter

    async def around(self, call: Call, tokens: int) -> Completion:
        meter = self.meter
        start = time.perf_counter()
        meter.in_flight += 1
        try:
            completion = await call()
        except CallFailed as error:
            meter.record_failure(error, time.perf_counter() - start)
            log.warning("%s", error)
            raise
        finally:
            meter.in_flight -= 1
        completion.seconds = time.perf_counter() - start
        meter.record(completion)
        return completion
