"""A ChatBackend wrapper that counts what the world spends: calls in flight, calls, tokens, retries, cost.

It sits outside the agents' own wrapper stack, so progress, budget stopping and metrics see every role's traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.backends.base import ChatBackend, Completion, Message, Sampling


@dataclass
class Meter:
    """Counters shared by every metered backend of a world (restored from episodes on resume)."""

    in_flight: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: int = 0
    price_prompt_per_1k: float = 0.0
    price_completion_per_1k: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float:
        return (
            self.prompt_tokens * self.price_prompt_per_1k + self.completion_tokens * self.price_completion_per_1k
        ) / 1000

    def add_usage(self, usage: dict) -> None:
        """Count a stored record's usage (resume: the budget covers the whole run, not just this process)."""
        self.calls += int(usage.get("calls", 0))
        self.prompt_tokens += int(usage.get("prompt_tokens", 0))
        self.completion_tokens += int(usage.get("completion_tokens", 0))
        self.retries += int(usage.get("retries", 0))


class Metered(ChatBackend):
    """Counts one backend's traffic into a shared Meter."""

    def __init__(self, inner: ChatBackend, meter: Meter) -> None:
        self.inner, self.meter = inner, meter
        self.model = getattr(inner, "model", "") or ""

    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        self.meter.in_flight += 1
        try:
            completion = await self.inner.chat(messages, sampling)
        except BaseException:
            self.meter.failures += 1
            raise
        finally:
            self.meter.in_flight -= 1
        self.meter.calls += completion.calls
        self.meter.prompt_tokens += completion.prompt_tokens
        self.meter.completion_tokens += completion.completion_tokens
        self.meter.retries += completion.retries
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
