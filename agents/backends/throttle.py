"""Requests-per-minute and tokens-per-minute throttle, and the concurrency cap (at most `limit` calls in flight).

RPM uses `asyncio_throttle.Throttler` (a sliding-window limiter). To keep the rate smooth rather than a burst of a
minute's worth of calls, the minute is split into `n` equal sub-windows of `rpm // n` calls each (any 60 s window then
holds at most `rpm` calls). Waiters queue FIFO on a lock so only the head polls the throttler. TPM is a token-weighted
sliding 60 s window built beside it: a call reserves its estimated tokens, corrected to the real count when it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from asyncio_throttle import Throttler

from agents.backends.base import ChatBackend, Completion
from agents.backends.wrapper import Call, PerLoop, Wrapper

_SAFETY = 1.01  # stretch windows by 1 % so network jitter cannot push a server-side window over the limit


def rpm_windows(rpm: int) -> tuple[int, float]:
    """(calls per sub-window, sub-window seconds) for `rpm`, keeping >= 95 % of the rate, as smooth as possible."""
    for n in range(min(60, rpm), 0, -1):
        if (rpm // n) * n >= 0.95 * rpm:
            return rpm // n, 60.0 / n
    return rpm, 60.0


class TokenWindow:
    """Token-weighted sliding window: at most `limit` tokens reserved in any `period` seconds."""

    def __init__(self, limit: int, period: float = 60.0) -> None:
        self.limit = limit
        self.period = period * _SAFETY
        self._entries: deque[list[float]] = deque()  # [time, tokens]
        self._total = 0.0

    def _flush(self, now: float) -> None:
        while self._entries and now - self._entries[0][0] >= self.period:
            self._total -= self._entries.popleft()[1]

    async def reserve(self, tokens: int) -> list[float]:
        tokens = min(tokens, self.limit)  # a call larger than the limit still runs, alone in its window
        while True:
            now = time.monotonic()
            self._flush(now)
            if self._total + tokens <= self.limit:
                entry = [now, float(tokens)]
                self._entries.append(entry)
                self._total += tokens
                return entry
            await asyncio.sleep(max(0.01, self._entries[0][0] + self.period - now))

    def settle(self, entry: list[float], actual: int) -> None:
        """Replace a reservation's estimate with the tokens the call really used."""
        if entry in self._entries:
            self._total += actual - entry[1]
        entry[1] = float(actual)


class Throttle(Wrapper):
    """Delay attempts so the backend sees at most `rpm` requests and `tpm` tokens per minute."""

    def __init__(self, inner: ChatBackend, rpm: int | None = None, tpm: int | None = None) -> None:
        super().__init__(inner)
        self.rpm, self.tpm = rpm, tpm

        def build() -> tuple[asyncio.Lock, Throttler | None, TokenWindow | None]:
            throttler = None
            if rpm:
                calls, window = rpm_windows(rpm)
                throttler = Throttler(rate_limit=calls, period=window * _SAFETY, retry_interval=0.005)
            return asyncio.Lock(), throttler, TokenWindow(tpm) if tpm else None

        self._state = PerLoop(build)

    async def around(self, call: Call, tokens: int) -> Completion:
        lock, throttler, window = self._state.get()
        entry = None
        async with lock:  # FIFO: one waiter polls, the rest sleep on the lock
            if window is not None:
                entry = await window.reserve(tokens)
            if throttler is not None:
                await throttler.acquire()
        completion = await call()  # a failed attempt keeps its estimate reserved: the endpoint may count it too
        if entry is not None and window is not None:
            window.settle(entry, completion.prompt_tokens + completion.completion_tokens)
        return completion


class ConcurrencyCap(Wrapper):
    """A semaphore around each attempt (backoff sleeps happen outside it, so they do not hold a slot)."""

    def __init__(self, inner: ChatBackend, limit: int) -> None:
        super().__init__(inner)
        self.limit = limit
        self._semaphore = PerLoop(lambda: asyncio.Semaphore(limit))

    async def around(self, call: Call, tokens: int) -> Completion:
        async with self._semaphore.get():
            return await call()
