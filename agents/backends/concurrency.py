"""Concurrency cap: at most `limit` calls in flight through this backend."""

from __future__ import annotations

import asyncio

from agents.backends.base import ChatBackend, Completion
from agents.backends.wrapper import Call, PerLoop, Wrapper


class ConcurrencyCap(Wrapper):
    """A semaphore around each attempt (backoff sleeps happen outside it, so they do not hold a slot)."""

    def __init__(self, inner: ChatBackend, limit: int) -> None:
        super().__init__(inner)
        self.limit = limit
        self._semaphore = PerLoop(lambda: asyncio.Semaphore(limit))

    async def around(self, call: Call, tokens: int) -> Completion:
        async with self._semaphore.get():
            return await call()
