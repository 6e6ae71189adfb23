"""Endpoint pool: several replicas of one model (e.g. vLLM servers) behind one backend.

Each attempt goes to the available endpoint with the fewest attempts in flight (ties: round robin). An endpoint that
cannot be reached (`EndpointDown`: refused, dropped, not an API) is benched at once; one that fails `bench_after`
times in a row (5xx, timeout) too. A benched endpoint is left alone for `cooldown_s`, then gets one probe attempt
(half-open): a success brings it back, a failure benches it again. A call whose endpoint failed is re-sent elsewhere:
the retry wrapper opens a `TRIED` set per call, and the pool prefers endpoints outside it. When every endpoint is
benched, an attempt waits for the earliest cool-down to end; it fails (a TransientError, so the retry wrapper counts
it) when a probe fails meanwhile, so calls never hang. When no endpoint has ever answered and all are down, the
pool raises one UserError naming each (a setting to fix, as with a single endpoint).

`capacity` (per-endpoint `limits.concurrency`) caps the attempts in flight per endpoint; `None`: uncapped (the
concurrency cap, if any, is global and sits above the pool). Not to be confused with openai_compat's `_ClientPool`,
which spreads the calls to ONE endpoint over several HTTP clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import urllib.parse
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from agents.backends.base import ChatBackend, Completion
from agents.backends.errors import TransientError
from agents.backends.wrapper import Forward, PerLoop
from conf.errors import UserError

# The endpoints (indices) that failed the current call; the retry wrapper sets a fresh set per call.
TRIED: ContextVar[set[int] | None] = ContextVar("endpoint_pool_tried", default=None)
_POLL_S = 1.0  # a waiter re-checks at least this often (a wake-up lost to a cancelled waiter cannot strand it)


class EndpointDown(TransientError):
    """An endpoint that cannot be reached. `failover`: another endpoint can take the call now (retry without a
    backoff sleep)."""

    def __init__(self, message: str, failover: bool = False) -> None:
        super().__init__(message)
        self.failover = failover


def public_url(url: str) -> str:
    """`url` without credentials, query string or fragment (for logs and metrics)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..100) of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class EndpointState:
    """One endpoint's health and counters."""

    url: str
    in_flight: int = 0
    benched_until: float | None = None  # None: healthy; else benched until then, then one probe (half-open)
    probing: bool = False
    failing: int = 0  # failures in a row
    answered: bool = False
    calls: int = 0
    failures: int = 0
    benched: int = 0
    last_error: str = ""
    latencies: array = field(default_factory=lambda: array("d"))

    def available(self, now: float) -> bool:
        return self.benched_until is None or (self.benched_until <= now and not self.probing)

    def report(self) -> dict[str, Any]:
        lat = self.latencies
        latency = None
        if lat:
            latency = {"mean": round(sum(lat) / len(lat), 4), "p50": round(percentile(lat, 50), 4),
                       "p95": round(percentile(lat, 95), 4)}  # fmt: skip
        return {"url": self.url, "calls": self.calls, "ok": len(lat), "failures": self.failures,
                "benched": self.benched, "latency_s": latency}  # fmt: skip


class EndpointPool(Forward):
    """Routes each attempt to one of `endpoints` (ChatBackends for the same model, one per URL)."""

    def __init__(
        self,
        endpoints: Sequence[ChatBackend],
        urls: Sequence[str],
        capacity: int | None = None,
        cooldown_s: float = 10.0,
        bench_after: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints or len(endpoints) != len(urls):
            raise ValueError("one URL per endpoint, at least one")
        self.endpoints = list(endpoints)
        self.states = [EndpointState(public_url(u)) for u in urls]
        self.model = endpoints[0].model
        self.capacity, self.cooldown_s, self.bench_after, self.clock = capacity, cooldown_s, bench_after, clock
        self._next = 0  # round-robin start among ties
        self.bench_events = 0
        self._waiters: PerLoop = PerLoop(deque)  # futures of the attempts waiting for an endpoint

    def __repr__(self) -> str:
        return f"EndpointPool({[s.url for s in self.states]!r})"

    # -- selection and health (synchronous; the async part only waits and notifies) --------------------------------

    def choose(self, now: float, tried: set[int] | frozenset[int] = frozenset()) -> int | None:
        """The endpoint for the next attempt (fewest in flight, ties round robin, not yet tried by this call if
        possible), or None when none is available or all are at capacity."""
        n = len(self.states)
        free = [i for i, s in enumerate(self.states)
                if s.available(now) and (self.capacity is None or s.in_flight < self.capacity)]  # fmt: skip
        fresh = [i for i in free if i not in tried]
        return min(fresh or free, key=lambda i: (self.states[i].in_flight, (i - self._next) % n), default=None)

    def begin(self, index: int) -> None:
        state = self.states[index]
        state.in_flight += 1
        state.calls += 1
        state.probing = state.benched_until is not None
        self._next = (index + 1) % len(self.states)

    def succeed(self, index: int, seconds: float) -> None:
        state = self.states[index]
        state.in_flight -= 1
        state.answered, state.failing, state.benched_until, state.probing = True, 0, None, False
        state.latencies.append(seconds)

    def fail(self, index: int, now: float, error: BaseException, down: bool, counts: bool = True) -> None:
        """A failed attempt: `down` benches at once; a counted failure benches after `bench_after` in a row, and a
        failed probe re-benches."""
        state = self.states[index]
        state.in_flight -= 1
        state.failures += 1
        state.last_error = str(error)
        state.answered = state.answered or getattr(error, "status", None) is not None  # an HTTP status: it is there
        probe, state.probing = state.probing, False
        if not counts:
            return
        state.failing += 1
        if down or probe or state.failing >= self.bench_after:
            state.benched_until = now + self.cooldown_s
            state.benched += 1
            self.bench_events += 1

    def release(self, index: int) -> None:
        """An attempt that ended without a verdict on the endpoint (cancelled, or refused as a bad request)."""
        state = self.states[index]
        state.in_flight -= 1
        state.probing = False

    def next_expiry(self, now: float) -> float | None:
        """Seconds until the earliest bench ends (None: nothing to wait for but a finished attempt)."""
        ends = [s.benched_until for s in self.states if s.benched_until is not None and s.benched_until > now]
        return min(ends) - now if ends else None

    def can_fail_over(self, now: float, tried: set[int] | frozenset[int]) -> bool:
        """Whether an endpoint this call has not tried is available (maybe busy) to take it now."""
        return any(s.available(now) for i, s in enumerate(self.states) if i not in tried)

    def report(self) -> list[dict[str, Any]]:
        """Per-endpoint calls (attempts sent), ok, failures, times benched and latency of answered calls."""
        return [s.report() for s in self.states]

    # -- routing ----------------------------------------------------------------------------------------------------

    async def _acquire(self, tried: set[int]) -> int:
        seen = self.bench_events
        while True:
            now = self.clock()
            index = self.choose(now, tried)
            if index is not None:
                self.begin(index)
                return index
            if self.bench_events != seen and not any(s.benched_until is None for s in self.states):
                down = "; ".join(s.last_error for s in self.states)
                raise EndpointDown(f"all {len(self.states)} endpoints are down ({down})")
            await self._wait(self.next_expiry(now) or _POLL_S)

    async def _wait(self, seconds: float) -> None:
        """Sleep until a finished attempt wakes this waiter or `seconds` pass. No lock: the pool's state changes
        only between awaits, so a plain future per waiter is enough (and cannot be left held by a cancelled task)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        waiters = self._waiters.get()
        waiters.append(waiter)
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)

    def _notify(self, everyone: bool) -> None:
        """Wake one waiter (a slot freed) or all (an endpoint came back or was benched)."""
        waiters = self._waiters.get()
        while waiters:
            if _wake(waiters.popleft()) and not everyone:
                return

    async def send(self, call: Callable[[ChatBackend], Awaitable[Completion]], tokens: int) -> Completion:
        """`call` on the endpoint `_acquire` picks, its outcome counted for that endpoint."""
        tried = TRIED.get()
        tried = tried if tried is not None else set()
        index = await self._acquire(tried)
        events, benched = self.bench_events, self.states[index].benched_until is not None
        try:
            completion = await call(self.endpoints[index])
        except TransientError as error:
            # unreachable (EndpointDown), 5xx, timeouts and dropped connections count against the endpoint (the
            # first benches it at once); 408/409/429 do not
            down = isinstance(error, EndpointDown)
            self.fail(index, self.clock(), error, down, counts=error.status is None or error.status >= 500)
            tried.add(index)
            if not down:
                raise
            if not any(s.answered or s.benched_until is None for s in self.states):  # all benched, none ever answered
                reasons = "; ".join(s.last_error for s in self.states)
                raise UserError(
                    f"no endpoint of the pool answered ({reasons}); start the servers or fix base_url "
                    "(backend.base_url / embedder.base_url)"
                ) from None
            raise EndpointDown(str(error), failover=self.can_fail_over(self.clock(), tried)) from None
        except asyncio.CancelledError:
            self.release(index)
            raise
        except Exception as error:  # a bad request, a rejected key: the endpoint answered; not its fault
            self.fail(index, self.clock(), error, down=False, counts=False)
            raise
        else:
            self.succeed(index, completion.seconds)
            return completion
        finally:
            self._notify(everyone=benched or self.bench_events != events)

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.aclose()


def _wake(waiter: asyncio.Future) -> bool:
    """Resolve a waiter's future; False if it was already done (woken, timed out or cancelled)."""
    if waiter.done():
        return False
    waiter.set_result(None)
    return True
