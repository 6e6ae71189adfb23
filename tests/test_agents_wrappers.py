"""The wrapper stack: retry honours Retry-After with capped backoff, failures are reported (the world's budget on
the meters: tests/test_environment_stopping.py), timeouts are retried, the concurrency cap and the RPM/TPM throttle hold, and the factory validates config."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from agents.backends.base import ChatBackend, Completion, Message, Sampling
from agents.backends.errors import CallFailed, PermanentError, TransientError
from agents.backends.retry import Retry, Timeout
from agents.backends.throttle import ConcurrencyCap, Throttle, TokenWindow, rpm_windows
from agents.backends.usage import UsageAccounting, UsageMeter
from agents.factory import build_backend, stack
from conf.errors import UserError

HELLO = [{"role": "user", "content": "hello"}]


class Fake(ChatBackend):
    """Fails with the queued errors first, then answers after `delay` seconds; records start times and overlap."""

    model = "fake"

    def __init__(self, errors: Sequence[Exception] = (), delay: float = 0.0) -> None:
        self.errors, self.delay = list(errors), delay
        self.starts: list[float] = []
        self.in_flight = self.max_in_flight = 0

    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        self.starts.append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.errors:
                raise self.errors.pop(0)
            await asyncio.sleep(self.delay)
            return Completion("ok", prompt_tokens=100, completion_tokens=20, model=self.model)
        finally:
            self.in_flight -= 1


def test_retry_honours_retry_after_and_counts_attempts():
    fake = Fake([TransientError("429", retry_after=0.4, status=429)])
    retry = Retry(fake, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.02, seed=0)
    completion = asyncio.run(retry.chat(HELLO))
    assert (completion.calls, completion.retries) == (2, 1)
    assert fake.starts[1] - fake.starts[0] >= 0.4  # the backoff alone would have been <= 0.02 s


def test_retry_after_pauses_other_calls_of_the_same_backend():
    async def main():
        fake = Fake([TransientError("429", retry_after=0.3, status=429)], delay=0.05)
        retry = Retry(fake, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.01)
        first = asyncio.ensure_future(retry.chat(HELLO))
        await asyncio.sleep(0.05)  # the first call has been told to wait 0.3 s
        t = time.monotonic()
        await retry.chat(HELLO)
        await first
        return time.monotonic() - t

    assert asyncio.run(main()) >= 0.2


def test_backoff_is_exponential_capped_and_jittered():
    retry = Retry(Fake(), backoff_base_s=1.0, backoff_max_s=8.0, retry_after_max_s=30.0, seed=1)
    delays = [retry.delay(n, None) for n in range(12)]
    assert all(0.5 <= delays[0] <= 1.0 for _ in range(1)) and all(4.0 <= d <= 8.0 for d in delays[3:])
    assert max(delays) <= 8.0 and len(set(delays)) == len(delays)  # capped, jittered
    assert retry.delay(0, 1000.0) == 30.0  # a huge Retry-After is capped too
    assert retry.delay(0, 5.0) >= 5.0


def test_final_failure_is_reported_not_lost():
    meter = UsageMeter(model="fake")
    fake = Fake([TransientError("HTTP 500", status=500)] * 5)
    backend = UsageAccounting(Retry(fake, max_retries=2, backoff_base_s=0.001, backoff_max_s=0.002), meter)
    with pytest.raises(CallFailed) as caught:
        asyncio.run(backend.chat(HELLO))
    assert caught.value.attempts == 3 and len(fake.starts) == 3
    assert (meter.failures, meter.calls, meter.retries) == (1, 3, 2)
    assert meter.failed == [{"model": "fake", "attempts": 3, "error": "TransientError: HTTP 500"}]


def test_permanent_errors_are_not_retried():
    fake = Fake([PermanentError("400 prompt too long", 400)])
    with pytest.raises(CallFailed):
        asyncio.run(Retry(fake, max_retries=5, backoff_base_s=0.001).chat(HELLO))
    assert len(fake.starts) == 1


def test_timeout_becomes_a_retried_transient_error():
    class SlowOnce(Fake):
        async def chat(self, messages, sampling=Sampling()):
            if not self.starts:
                self.starts.append(time.monotonic())
                await asyncio.sleep(5)
            return await super().chat(messages, sampling)

    slow = SlowOnce()
    start = time.monotonic()
    completion = asyncio.run(Retry(Timeout(slow, 0.1), max_retries=1, backoff_base_s=0.01).chat(HELLO))
    assert completion.retries == 1 and time.monotonic() - start < 2


def test_concurrency_cap():
    fake = Fake(delay=0.02)
    capped = ConcurrencyCap(fake, 3)

    async def main():
        await asyncio.gather(*(capped.chat(HELLO) for _ in range(12)))

    asyncio.run(main())
    assert fake.max_in_flight == 3


def test_rpm_throttle_spreads_calls():
    assert rpm_windows(600) == (10, 1.0) and rpm_windows(7) == (1, 60 / 7)
    fake = Fake()
    throttled = Throttle(fake, rpm=600)

    async def main():
        await asyncio.gather(*(throttled.chat(HELLO) for _ in range(25)))

    asyncio.run(main())
    starts = sorted(fake.starts)
    assert starts[-1] - starts[0] >= 2.0  # 25 calls at 10 per second
    assert max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts) <= 10


def test_token_window_waits_for_room():
    async def main():
        window = TokenWindow(limit=100, period=0.3)
        start = time.monotonic()
        await window.reserve(60)
        entry = await window.reserve(60)
        waited = time.monotonic() - start
        window.settle(entry, 10)
        return waited, window._total

    waited, total = asyncio.run(main())
    assert waited >= 0.3 and total == 10


def test_stack_order_and_config_validation():
    meter = UsageMeter()
    limits = {"concurrency": 2, "rpm": 60, "tpm": 1000, "timeout_s": 5, "max_retries": 1}
    layers, layer = [], stack(Fake(), limits, meter)
    while layer is not None:
        layers.append(type(layer).__name__)
        layer = getattr(layer, "inner", None)
    assert layers == ["UsageAccounting", "Retry", "ConcurrencyCap", "Throttle", "Timeout", "Fake"]
    with pytest.raises(UserError, match="unknown backend.limits"):
        stack(Fake(), {"rpn": 5}, meter)
    with pytest.raises(UserError, match="positive"):
        stack(Fake(), {"rpm": -1}, meter)
    with pytest.raises(UserError, match="backend.name"):
        build_backend({"name": "vllm"})
    with pytest.raises(UserError, match="backend.model"):
        build_backend({"name": "openai", "model": "", "base_url": "http://127.0.0.1:9/v1"})


def test_openai_backend_needs_the_key_variable_unless_a_base_url_is_given(monkeypatch):
    monkeypatch.delenv("SA_TEST_KEY", raising=False)
    with pytest.raises(UserError, match="SA_TEST_KEY"):
        build_backend({"name": "openai", "model": "gpt-4o-mini", "api_key_env": "SA_TEST_KEY"})
    node = {"name": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "SA_TEST_KEY"}
    assert build_backend(node) is build_backend(dict(node))  # one shared instance per node


class _HalfFailingEmbeddings:
    """An embeddings backend on which the batch holding "bad" fails at once and every other batch takes 30 s."""

    model = "half-failing"

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    async def embed(self, texts: Sequence[str]) -> Completion:
        if "bad" in texts:
            raise PermanentError("400 bad input")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.extend(texts)
            raise
        return Completion(text="", extra={"vectors": [[1.0, 0.0]] * len(texts)})

    async def aclose(self) -> None:
        pass


def test_a_failed_embedding_batch_leaves_no_sibling_batch_running() -> None:
    """The other batches of the call are cancelled before the failure is raised (they used to run on after it,
    so their calls reached the usage meters after metrics.json was written: the CI flake of 2026-12-02)."""
    from agents.backends.openai_embed import OpenAIEmbedder

    backend = _HalfFailingEmbeddings()
    embedder = OpenAIEmbedder(backend, dim=2, batch_size=1)  # type: ignore[arg-type]

    async def main() -> set[asyncio.Task]:
        started = time.perf_counter()
        with pytest.raises(PermanentError):
            await embedder.embed(["slow one", "bad", "slow two"])
        assert time.perf_counter() - started < 5
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    assert asyncio.run(main()) == set()
    assert sorted(backend.cancelled) == ["slow one", "slow two"]
