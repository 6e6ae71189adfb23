"""A ChatBackend wrapper that counts what the world spends: calls in flight, calls, tokens, retries, cost.

It sits outside the agents' own wrapper stack, so progress, budget stopping and metrics see every role's traffic.
Cost uses the backends' own price tables (`backend.prices`: model → USD per 1M prompt / completion tokens).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.backends.base import ChatBackend, Completion, Message, Sampling
from agents.backends.usage import price_of


@dataclass
class Meter:
    """Counters shared by every metered backend of a world (restored from episodes on resume)."""

    in_flight: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: int = 0
    cost: float = 0.0  # USD
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    on_spend: Callable[[], None] | None = field(default=None, repr=False)  # called after every counted call

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_usage(self, usage: Mapping[str, Any], model: str = "") -> None:
        """Count a stored record's usage (resume: the budget covers the whole run, not just this process).

        A record does not split its usage by role, so all of it is priced at the record's agent model.
        """
        prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        self.calls += int(usage.get("calls", 0))
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.retries += int(usage.get("retries", 0))
        self.cost += price_of(self.prices, model, prompt, completion)


class Metered(ChatBackend):
    """Counts one backend's traffic into a shared Meter."""

    def __init__(self, inner: ChatBackend, meter: Meter) -> None:
        self.inner, self.meter = inner, meter
        self.model = getattr(inner, "model", "") or ""

    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        return await self._count(lambda: self.inner.chat(messages, sampling))

    async def top_logprobs(
        self, messages: Sequence[Message], sampling: Sampling, top_k: int = 20, candidates: Sequence[str] = ()
    ) -> Completion:
        return await self._count(lambda: self.inner.top_logprobs(messages, sampling, top_k, candidates))

    async def answer_logprobs(self, messages: Sequence[Message], answer: str) -> Completion:
        return await self._count(lambda: self.inner.answer_logprobs(messages, answer))

    async def _count(self, call: Callable[[], Awaitable[Completion]]) -> Completion:
        self.meter.in_flight += 1
        try:
            completion = await call()
        except BaseException:
            self.meter.failures += 1
            raise
        finally:
            self.meter.in_flight -= 1
        meter = self.meter
        meter.calls += completion.calls
        meter.prompt_tokens += completion.prompt_tokens
        meter.completion_tokens += completion.completion_tokens
        meter.retries += completion.retries
        model = completion.model or self.model
        meter.cost += price_of(meter.prices, model, completion.prompt_tokens, completion.completion_tokens)
        if meter.on_spend is not None:
            meter.on_spend()
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
