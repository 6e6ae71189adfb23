"""Endpoint pools (a list of base_url): least-in-flight selection with round-robin ties, benching and half-open
probes on a fake clock, retries re-sent to another endpoint, bounded waits when every endpoint is down, per-endpoint
limits, and a real sa-simulate world on three loopback stubs that survives one of them being killed mid-run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from agents.backends.base import ChatBackend, Completion, Message, Sampling
from agents.backends.endpoint_pool import EndpointDown, EndpointPool, percentile, public_url
from agents.backends.errors import CallFailed, PermanentError, TransientError
from agents.backends.openai_compat import OpenAIBackend
from agents.backends.retry import Retry, Timeout
from agents.backends.throttle import Throttle
from agents.factory import build_backend, close_all, pool_of
from conf.errors import UserError
from environment.records import read_episodes, record_key
from loopback.servers import free_port, start_openai_stub

HELLO = [{"role": "user", "content": "hello"}]
URLS = ["http://a:1/v1", "http://b:2/v1", "http://c:3/v1"]
REPO_ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """A fake monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Replica(ChatBackend):
    """One fake endpoint: raises its queued errors first (`down` = EndpointDown on every call), then answers after
    `delay` seconds; records its calls and the peak in flight."""

    model = "fake"

    def __init__(self, name: str, errors: Sequence[Exception] = (), delay: float = 0.0) -> None:
        self.name, self.errors, self.delay = name, list(errors), delay
        self.down = False
        self.calls = self.in_flight = self.peak = 0

    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.down:
                raise EndpointDown(f"{self.name} refused the connection")
            if self.errors:
                raise self.errors.pop(0)
            await asyncio.sleep(self.delay)
            return Completion(self.name, model=self.model, seconds=self.delay)
        finally:
            self.in_flight -= 1


def pool_of_three(clock: Clock | None = None, **options) -> tuple[EndpointPool, list[Replica]]:
    replicas = [Replica(name) for name in "abc"]
    return EndpointPool(replicas, URLS, clock=clock or time.monotonic, **options), replicas


def test_fewest_in_flight_wins_and_ties_go_round_robin():
    pool, _ = pool_of_three(Clock())
    picks = []
    for _ in range(3):
        picks.append(pool.choose(0.0))
        pool.begin(picks[-1])
    assert picks == [0, 1, 2]  # all tied at 0, then 1 in flight each: round robin
    pool.succeed(1, 0.1)
    assert pool.choose(0.0) == 1  # the only one with nothing left in flight
    pool.begin(1)
    assert pool.choose(0.0) == 2  # a tie again (1 each): round robin continues after 1
    assert pool.choose(0.0, tried={2}) == 0  # a call prefers an endpoint it has not failed on


def test_a_down_endpoint_is_benched_then_probed_once_half_open():
    clock = Clock()
    pool, _ = pool_of_three(clock, cooldown_s=5.0)
    pool.begin(0)
    pool.fail(0, clock(), EndpointDown("a refused"), down=True)
    assert {pool.choose(clock()) for _ in range(5)} <= {1, 2} and pool.states[0].benched == 1
    pool.begin(1)
    pool.begin(2)
    assert pool.choose(clock()) in (1, 2)  # busy, but a benched endpoint is never chosen
    clock.now += 5.0  # the cool-down has passed: one probe (and the fewest in flight)
    assert pool.choose(clock()) == 0
    pool.begin(0)
    assert pool.states[0].probing and pool.choose(clock()) != 0  # half-open: one probe at a time
    pool.fail(0, clock(), EndpointDown("a refused"), down=True)  # the probe failed: benched again
    assert pool.states[0].benched == 2 and pool.next_expiry(clock()) == pytest.approx(5.0)
    clock.now += 5.0
    pool.begin(pool.choose(clock()))
    pool.succeed(0, 0.2)  # the probe answered: healthy again
    assert pool.states[0].benched_until is None and pool.states[0].failing == 0


def test_5xx_benches_after_bench_after_in_a_row_and_429_never():
    clock = Clock()
    pool, _ = pool_of_three(clock, bench_after=2)
    for counts in (True, False, False, False):  # one 500, then three 429s (not the endpoint's health)
        pool.begin(1)
        pool.fail(1, clock(), TransientError("x"), down=False, counts=counts)
    assert pool.states[1].benched_until is None
    pool.begin(1)
    pool.fail(1, clock(), TransientError("500"), down=False)  # the second 500 in a row
    assert pool.states[1].benched_until is not None
    assert pool.report()[1] == {"url": URLS[1], "calls": 5, "ok": 0, "failures": 5, "benched": 1, "latency_s": None}


def test_report_has_latency_percentiles_and_urls_without_credentials():
    assert public_url("https://user:secret@host.example:8443/v1?api-key=k#x") == "https://host.example:8443/v1"
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    values = [float(i) for i in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile([3.0], 95)) == (50.0, 95.0, 3.0)
    pool = EndpointPool([Replica("a")], ["http://u:p@a:1/v1?k=1"])
    for seconds in (0.1, 0.2, 0.3, 0.4):
        pool.begin(0)
        pool.succeed(0, seconds)
    assert pool.report() == [{"url": "http://a:1/v1", "calls": 4, "ok": 4, "failures": 0, "benched": 0,
                              "latency_s": {"mean": 0.25, "p50": 0.2, "p95": 0.4}}]  # fmt: skip


def test_a_retried_call_goes_to_another_endpoint_at_once():
    """The endpoint that failed a call is down: the retry is re-sent elsewhere without the backoff sleep (30 s)."""

    async def main():
        pool, (a, b, c) = pool_of_three()
        a.down = True
        retry = Retry(pool, max_retries=3, backoff_base_s=30, backoff_max_s=30)
        started = time.monotonic()
        completion = await retry.chat(HELLO)
        return completion, time.monotonic() - started, (a.calls, b.calls, c.calls)

    completion, seconds, calls = asyncio.run(main())
    assert (completion.text, completion.calls, completion.retries, calls) == ("b", 2, 1, (1, 1, 0))
    assert seconds < 1.0


def test_a_5xx_is_retried_on_another_endpoint_without_benching_the_first():
    async def main():
        pool, (a, b, c) = pool_of_three(bench_after=2)
        a.errors = [TransientError("500", status=500)]
        retry = Retry(pool, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.01)
        completion = await retry.chat(HELLO)
        return completion, pool

    completion, pool = asyncio.run(main())
    assert completion.text == "b" and completion.retries == 1
    assert pool.states[0].benched_until is None and pool.states[0].failures == 1


def test_all_down_waits_for_the_earliest_return():
    """Every endpoint benched: the call waits for the first cool-down to end and its probe answers."""

    async def main():
        pool, replicas = pool_of_three(cooldown_s=0.3)
        for replica in replicas:
            replica.down = True
        retry = Retry(pool, max_retries=6, backoff_base_s=0.01, backoff_max_s=0.01)
        for index in range(3):  # answered once each, so being down is a fault, not a setting
            pool.begin(index)
            pool.succeed(index, 0.0)
        started = time.monotonic()
        with pytest.raises(CallFailed):  # three endpoints, three attempts, all refused
            await Retry(pool, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.01).chat(HELLO)
        replicas[1].down = False
        completion = await retry.chat(HELLO)
        return completion, time.monotonic() - started

    completion, seconds = asyncio.run(main())
    assert completion.text == "b" and 0.25 <= seconds < 2.0


def test_calls_fail_in_bounded_time_when_every_endpoint_stays_down():
    async def main():
        pool, replicas = pool_of_three(cooldown_s=0.1)
        for index, replica in enumerate(replicas):
            pool.begin(index)
            pool.succeed(index, 0.0)
            replica.down = True
        retry = Retry(pool, max_retries=4, backoff_base_s=0.01, backoff_max_s=0.02)
        started = time.monotonic()
        results = await asyncio.gather(*(retry.chat(HELLO) for _ in range(10)), return_exceptions=True)
        return results, time.monotonic() - started

    results, seconds = asyncio.run(main())
    assert all(isinstance(r, CallFailed) for r in results) and seconds < 5.0
    assert all("refused" in str(r) or "down" in str(r) for r in results)


def test_per_endpoint_capacity_caps_each_endpoint():
    async def main():
        replicas = [Replica(name, delay=0.02) for name in "abc"]
        pool = EndpointPool(replicas, URLS, capacity=2)
        await asyncio.gather(*(pool.chat(HELLO) for _ in range(30)))
        return replicas

    replicas = asyncio.run(main())
    assert [r.peak for r in replicas] == [2, 2, 2] and sum(r.calls for r in replicas) == 30


def test_a_bad_request_or_cancel_frees_the_slot_without_benching():
    async def main():
        replicas = [Replica("a", [PermanentError("400")], delay=5.0)]
        pool = EndpointPool(replicas, URLS[:1], capacity=1)
        with pytest.raises(PermanentError):
            await pool.chat(HELLO)
        task = asyncio.ensure_future(pool.chat(HELLO))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return pool.states[0]

    state = asyncio.run(main())
    assert (state.in_flight, state.benched_until, state.failures, state.calls) == (0, None, 1, 2)


def node(urls, **limits) -> dict:
    return {"name": "openai", "model": "stub-model", "base_url": urls, "api_key_env": "SA_TEST_API_KEY",
            "limits": {"concurrency": 8, "rpm": 600, "timeout_s": 5, "max_retries": 2, **limits}}  # fmt: skip


def layers(backend) -> list[str]:
    names = []
    while backend is not None:
        names.append(type(backend).__name__)
        backend = getattr(backend, "inner", None)
    return names


def test_factory_builds_global_or_per_endpoint_limits():
    one = build_backend(node("http://127.0.0.1:1/v1", scope="per_endpoint"))  # a single URL: as before, no pool
    assert layers(one) == ["UsageAccounting", "Retry", "ConcurrencyCap", "Throttle", "Timeout", "OpenAIBackend"]
    shared = build_backend(node(URLS))
    assert layers(shared) == ["UsageAccounting", "Retry", "ConcurrencyCap", "Throttle", "EndpointPool"]
    pool = pool_of(shared)
    assert pool.capacity is None and [layers(e) for e in pool.endpoints] == [["Timeout", "OpenAIBackend"]] * 3
    own = pool_of(build_backend(node(URLS, scope="per_endpoint", cooldown_s=3, bench_after=4)))
    assert (own.capacity, own.cooldown_s, own.bench_after) == (8, 3.0, 4)
    assert layers(own.endpoints[0]) == ["Throttle", "Timeout", "OpenAIBackend"]
    assert isinstance(own.endpoints[0], Throttle) and own.endpoints[0].rpm == 600
    assert isinstance(own.endpoints[0].inner, Timeout) and isinstance(own.endpoints[0].inner.inner, OpenAIBackend)
    assert layers(build_backend(node(URLS[:1]))) == layers(one)  # a list of one: the single-URL stack
    for bad, message in ((node(URLS, scope="each"), "backend.limits.scope='each'"),
                         (node([URLS[0], URLS[0]]), "lists http://a:1/v1 more than once"),
                         (node([]), "must be one URL or a list"), (node(URLS, bench_after=0), "bench_after=0")):  # fmt: skip
        with pytest.raises(UserError, match=message.replace("[", r"\[").replace("?", r"\?")):
            build_backend(bad)


def test_no_endpoint_answering_is_one_line_naming_each():
    """A pool where nothing listens anywhere: one UserError (the setting to fix), not backoffs."""
    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]

    async def main():
        try:
            await build_backend(node(urls, max_retries=6, backoff_base_s=30)).chat(HELLO, Sampling(max_tokens=4))
        finally:
            await close_all()

    with pytest.raises(UserError) as caught:
        asyncio.run(main())
    message = str(caught.value)
    assert message.startswith("no endpoint of the pool answered") and "\n" not in message
    assert all(f"{url} refused the connection" in message for url in urls)


def test_one_refused_replica_at_start_is_benched_not_an_error(openai_stub):
    server = openai_stub()
    dead = f"http://127.0.0.1:{free_port()}/v1"

    async def main():
        backend = build_backend(node([dead, server.base_url], cooldown_s=60))
        try:
            replies = [await backend.chat(HELLO, Sampling(max_tokens=4)) for _ in range(4)]
            return replies, pool_of(backend).report()
        finally:
            await close_all()

    replies, report = asyncio.run(main())
    assert all(r.text for r in replies) and [e["ok"] for e in report] == [0, 4]
    assert (report[0]["failures"], report[0]["benched"]) == (1, 1)  # tried once, then left alone


def test_waiters_cancelled_mid_wait_never_wedge_the_pool():
    """Attempts waiting for a slot are cancelled at random while others finish: every attempt left completes and no
    slot leaks. (The waits hold no lock: an asyncio.Condition + wait_for version wedged a world ~1 run in 6 when its
    endpoints died, caught by the test below that kills them all.)"""

    async def main():
        replicas = [Replica(name, delay=0.005) for name in "ab"]
        pool = EndpointPool(replicas, URLS[:2], capacity=1)
        done = cancelled = 0
        for wave in range(20):
            tasks = [asyncio.ensure_future(pool.chat(HELLO)) for _ in range(12)]
            await asyncio.sleep(0.004 * (wave % 3))
            for task in tasks[wave % 2 :: 3]:
                task.cancel()
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
            done += sum(isinstance(r, Completion) for r in results)
            cancelled += sum(isinstance(r, asyncio.CancelledError) for r in results)
        return pool, done, cancelled

    pool, done, cancelled = asyncio.run(main())
    assert done + cancelled == 240 and done >= 120 and [s.in_flight for s in pool.states] == [0, 0]
    assert sum(len(s.latencies) for s in pool.states) == done


def stop_all(servers: list, process: subprocess.Popen | None) -> None:
    """Stop the stubs and, if it still runs (a failed assertion or a timeout), sa-simulate, by pid."""
    for server in servers:
        server.stop()
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(10)


# -- a real world on three loopback stubs, one killed mid-run -----------------------------------------------------

SIZE, ROUNDS = 3, 4


def pooled(servers: list) -> str:
    """The servers' URLs as one Hydra list override value."""
    return "[" + ",".join(s.base_url for s in servers) + "]"


def pooled_world(urls: str, run_dir: Path, *overrides: str) -> list[str]:
    """sa-simulate with the chat backend on the pool `urls` and the stub embedder (its URL among `overrides`)."""
    return [str(Path(sys.executable).parent / "sa-simulate"), "backend=openai", f"backend.base_url={urls}",
            "backend.model=stub-model", "embedder=openai", "embedder.model=stub-embed", "embedder.dim=384",
            "run.progress=false", "run.plots=false", *overrides, f"hydra.run.dir={run_dir}"]  # fmt: skip


@pytest.mark.slow
def test_world_on_three_endpoints_survives_one_killed_mid_run(tmp_path):
    servers = [start_openai_stub(tmp_path / "stubs", latency=0.05, log=True) for _ in range(3)]
    urls = pooled(servers)
    run_dir = tmp_path / "run"
    command = pooled_world(urls, run_dir,
        "backend.limits.concurrency=4", "backend.limits.scope=per_endpoint", "backend.limits.cooldown_s=0.5",
        "backend.limits.backoff_base_s=0.05", "backend.limits.timeout_s=10", f"embedder.base_url={urls}",
        f"world.size={SIZE}", f"world.rounds={ROUNDS}",
    )  # fmt: skip
    victim, process = servers[2], None
    try:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(victim.log_entries()) < 40 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        victim.stop()  # mid-run: it has served its share of the first rounds
        served_before_kill = sum(e["status"] == 200 for e in victim.log_entries())
        out, err = process.communicate(timeout=120)
    finally:
        stop_all(servers, process)
    assert process.returncode == 0, err[-3000:]
    records = list(read_episodes(run_dir / "episodes.jsonl"))
    keys = Counter(record_key(r) for r in records)
    assert len(records) == SIZE * SIZE * ROUNDS and max(keys.values()) == 1
    assert {(r, a) for _, r, a in keys} == {(r, a) for r in range(ROUNDS) for a in range(SIZE * SIZE)}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    chat = next(b for b in metrics["backends"] if b["model"] == "stub-model")
    assert chat["failures"] == 0 and [e["url"] for e in chat["endpoints"]] == [s.base_url for s in servers]
    alive, dead = chat["endpoints"][:2], chat["endpoints"][2]
    assert 0 < dead["ok"] <= served_before_kill and dead["failures"] >= 1 and dead["benched"] >= 1
    assert dead["calls"] == dead["ok"] + dead["failures"]  # every attempt accounted for
    answered = sum(e["ok"] for e in chat["endpoints"])
    assert all(e["ok"] > dead["ok"] and e["failures"] == 0 for e in alive)  # its share moved to the other two
    assert sum(e["ok"] for e in alive) > 2 / 3 * answered
    assert all(e["latency_s"]["p95"] >= e["latency_s"]["p50"] >= 0.05 for e in alive)
    embedder = next(b for b in metrics["backends"] if b["model"] == "stub-embed")
    assert len(embedder["endpoints"]) == 3 and embedder["failures"] == 0


def test_a_world_whose_every_endpoint_dies_stops_in_one_line_and_keeps_its_turns(tmp_path):
    """Both endpoints killed mid-run: calls wait for a cool-down, probe, fail after their retries; the run exits 2 in
    one line naming the endpoints, and the finished turns are kept for a resume (no hang)."""
    servers = [start_openai_stub(tmp_path / "stubs", latency=0.05, log=True) for _ in range(2)]
    run_dir = tmp_path / "run"
    command = pooled_world(pooled(servers), run_dir,
        "backend.limits.cooldown_s=0.2", "backend.limits.max_retries=3", "backend.limits.backoff_base_s=0.05",
        "backend.limits.backoff_max_s=0.1", f"embedder.base_url={servers[0].base_url}",
        "embedder.limits.max_retries=2", "embedder.limits.backoff_base_s=0.05",  # its own retries: 63 s by default
        "world.size=3", "world.rounds=6",
    )  # fmt: skip
    process = None
    try:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(servers[1].log_entries()) < 60 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        for server in servers:
            server.stop()
        started = time.monotonic()
        _, err = process.communicate(timeout=60)
    finally:
        stop_all(servers, process)
    lines = err.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("sa-simulate: error: a turn failed") and "refused the connection" in lines[0]
    assert any(s.base_url in lines[0] for s in servers) and time.monotonic() - started < 30  # names what refused
    records = list(read_episodes(run_dir / "episodes.jsonl"))
    assert 0 < len(records) < 9 * 6 and max(Counter(record_key(r) for r in records).values()) == 1
