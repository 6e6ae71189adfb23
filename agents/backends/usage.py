"""Usage accounting and budget: calls, retries, failures, tokens, latency and cost per backend; stops at a budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.backends.base import ChatBackend, Completion
from agents.backends.errors import BudgetExhausted, CallFailed
from agents.backends.wrapper import Call, Wrapper

log = logging.getLogger(__name__)


@dataclass
class Budget:
    """Upper bounds; None = unlimited. Checked before each call, so in-flight calls may overshoot slightly."""

    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None


def price_of(
    prices: Mapping[str, Mapping[str, float]], model: str, prompt_tokens: int, completion_tokens: int
) -> float:
    """USD for the tokens at `model`'s price per 1M prompt/completion tokens (0 for a model without a price)."""
    price = prices.get(model) or {}
    return (
        prompt_tokens * float(price.get("prompt", 0.0)) + completion_tokens * float(price.get("completion", 0.0))
    ) / 1e6


@dataclass
class UsageMeter:
    """Running totals for one backend; `failed` lists every call that finally failed (what, why, how many tries)."""

    model: str = ""
    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> USD per 1M prompt/completion tokens
    budget: Budget = field(default_factory=Budget)
    calls: int = 0
    requests: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost_usd: float = 0.0
    failed: list[dict[str, Any]] = field(default_factory=list)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return price_of(self.prices, model if model in self.prices else self.model, prompt_tokens, completion_tokens)

    def record(self, completion: Completion) -> None:
        self.requests += 1
        self.calls += completion.calls
        self.retries += completion.retries
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.seconds += completion.seconds
        self.cost_usd += self.cost(
            completion.model or self.model, completion.prompt_tokens, completion.completion_tokens
        )

    def record_failure(self, error: CallFailed, seconds: float) -> None:
        self.requests += 1
        self.failures += 1
        self.calls += error.attempts
        self.retries += error.attempts - 1
        self.seconds += seconds
        self.failed.append(
            {"model": error.model, "attempts": error.attempts, "error": f"{type(error.cause).__name__}: {error.cause}"}
        )

    def exhausted(self) -> str | None:
        """Why the budget is spent, or None."""
        b = self.budget
        if b.max_calls is not None and self.calls >= b.max_calls:
            return f"call budget of {b.max_calls} spent"
        if b.max_tokens is not None and self.prompt_tokens + self.completion_tokens >= b.max_tokens:
            return f"token budget of {b.max_tokens} spent"
        if b.max_cost_usd is not None and self.cost_usd >= b.max_cost_usd:
            return f"cost budget of ${b.max_cost_usd:g} spent"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "requests": self.requests,
            "calls": self.calls,
            "retries": self.retries,
            "failures": self.failures,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "cost_usd": round(self.cost_usd, 6),
            "failed": list(self.failed),
        }


class UsageAccounting(Wrapper):
    """Outermost layer: refuses new calls once the budget is spent, records every finished or failed call."""

    def __init__(self, inner: ChatBackend, meter: UsageMeter) -> None:
        super().__init__(inner)
        self.meter = meter

    async def around(self, call: Call, tokens: int) -> Completion:
        reason = self.meter.exhausted()
        if reason:
            raise BudgetExhausted(f"{self.model}: {reason}; raise backend.budget or start a new run to resume")
        start = time.perf_counter()
        try:
            completion = await call()
        except CallFailed as error:
            self.meter.record_failure(error, time.perf_counter() - start)
            log.warning("%s", error)
            raise
        completion.seconds = time.perf_counter() - start
        self.meter.record(completion)
        return completion
