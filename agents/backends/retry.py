"""Retries with capped exponential backoff and jitter, honouring Retry-After; and the per-attempt timeout beneath them.

A TransientError is retried up to `max_retries` times; the sleep before retry n is drawn from
[d/2, d] with d = min(backoff_max_s, backoff_base_s * 2**n). A Retry-After (capped at `retry_after_max_s`) is a floor
for that sleep and also pauses every other call through this backend until it has passed. A call that still fails
raises CallFailed (PermanentError fails at once).

With an endpoint pool (agents.backends.endpoint_pool) each call carries the set of endpoints that failed it (`TRIED`),
so a retry goes to another endpoint; a failure whose endpoint is down while another can take the call
(`EndpointDown.failover`) is retried at once, without the backoff sleep (it still counts as an attempt).

`Timeout`: an attempt slower than `seconds` becomes a TransientError (so the retry layer retries it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from agents.backends.base import ChatBackend, Completion
from agents.backends.endpoint_pool import TRIED
from agents.backends.errors import CallFailed, PermanentError, TransientError
from agents.backends.wrapper import Call, Wrapper

log = logging.getLogger(__name__)


class Retry(Wrapper):
    """Retry transient failures; count attempts into `Completion.calls` / `.retries`."""

    def __init__(
        self,
        inner: ChatBackend,
        max_retries: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        retry_after_max_s: float = 120.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(inner)
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self._random = random.Random(seed)
        self._pause_until = 0.0  # monotonic time before which no attempt starts (set by Retry-After)

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to sleep before retry number `retry` (0-based)."""
        cap = min(self.backoff_max_s, self.backoff_base_s * 2**retry)
        delay = self._random.uniform(cap / 2, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max_s))
        return delay

    async def around(self, call: Call, tokens: int) -> Completion:
        token = TRIED.set(set())  # the endpoints (of a pool) that failed this call
        try:
            return await self._attempts(call)
        finally:
            TRIED.reset(token)

    async def _attempts(self, call: Call) -> Completion:
        attempt = 0
        while True:
            wait = self._pause_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            attempt += 1
            try:
                completion = await call()
            except TransientError as error:
                if attempt > self.max_retries:
                    raise CallFailed(self.model, attempt, error) from error
                if getattr(error, "failover", False):
                    log.debug("%s: attempt %d failed (%s); re-sent to another endpoint", self.model, attempt, error)
                    continue
                delay = self.delay(attempt - 1, error.retry_after)
                if error.retry_after is not None:
                    self._pause_until = max(self._pause_until, time.monotonic() + delay)
                log.debug("%s: attempt %d failed (%s); retrying in %.2f s", self.model, attempt, error, delay)
                await asyncio.sleep(delay)
                continue
            except PermanentError as error:
                raise CallFailed(self.model, attempt, error) from error
            completion.calls = attempt
            completion.retries = attempt - 1
            return completion


class Timeout(Wrapper):
    """Cancel an attempt after `seconds`."""

    def __init__(self, inner: ChatBackend, seconds: float) -> None:
        super().__init__(inner)
        self.seconds = seconds

    async def around(self, call: Call, tokens: int) -> Completion:
        try:
            if hasattr(asyncio, "timeout"):  # Python >= 3.11: no extra task
                async with asyncio.timeout(self.seconds):
                    return await call()
            return await asyncio.wait_for(call(), self.seconds)
        except (TimeoutError, asyncio.TimeoutError) as error:
            raise TransientError(f"timed out after {self.seconds:g} s") from error
