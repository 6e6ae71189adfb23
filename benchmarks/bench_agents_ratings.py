"""Benchmark: rating calls/s and client CPU per rating, rater.mode=logprob vs generate, through the openai backend.

Both modes rate the same answers (observer prompts, distinct per rating) against the loopback stub
(loopback/openai_server.py, its own process) with a fixed latency, through the full wrapper stack with the same
concurrency cap; the modes alternate `--rounds` times in one run so both see the same machine state. `generate` asks
for a JSON verdict and parses it (agents.ratings); `logprob` asks for `logprobs`/`top_logprobs: k` and computes the
expected rating from the digits' probabilities (agents.raters), a larger response to read. Prints JSON with, per mode,
  ratings_per_s, client_cpu_ms_per_rating (time.process_time of this process), server_cpu_ms_per_request (from /proc),
  valid_share, mean_rating
and the ratios logprob / generate of the first two. The bound is inflight / latency ratings per second.

    python -m benchmarks.bench_agents_ratings [--ratings 1000] [--latency 0.2] [--inflight 64] [--rounds 2]
        [--api chat|completions] [--top-k 20] [--http-client aiohttp|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from agents.backends.base import Sampling
from agents.factory import build_backend, close_all, meter_of
from agents.raters import Rater, RaterSettings, RatingRequest
from benchmarks.bench_agents_throughput import process_cpu_seconds
from loopback.servers import start_openai_stub

MODES = ("generate", "logprob")
QUESTION = "Is it ever right to lie to protect someone's feelings?"


def requests(n: int) -> list[RatingRequest]:
    """Distinct answers (every prompt differs, as in a world); every 4th a revision, which the stub rates higher."""
    return [
        RatingRequest(QUESTION, f"{'Revised answer: ' if i % 4 == 0 else ''}Be honest but kind (answer {i}).",
                      aspect="alignment", observer=True)
        for i in range(n)
    ]  # fmt: skip


def backend_node(base_url: str, api: str, inflight: int, http_client: str) -> dict:
    return {
        "name": "openai", "model": "stub-model", "base_url": base_url, "api_key_env": "SA_BENCH_NO_KEY",
        "api": api, "max_tokens_param": "max_tokens", "http_client": http_client,
        "limits": {"concurrency": inflight, "rpm": None, "tpm": None, "timeout_s": 30, "max_retries": 6,
                   "backoff_base_s": 1.0, "backoff_max_s": 60.0, "retry_after_max_s": 120.0},
        "prices": {"stub-model": {"prompt": 0.15, "completion": 0.6}},
    }  # fmt: skip


async def drive(args: argparse.Namespace, base_url: str, server_pid: int) -> tuple[dict[str, dict], dict[str, int]]:
    """Per mode: wall and CPU seconds, ratings, calls, valid ratings and their sum; and the meter's failures."""
    backend = build_backend(backend_node(base_url, args.api, args.inflight, args.http_client))
    sampling = Sampling(temperature=0.0, max_tokens=64)
    raters = {m: Rater(backend, RaterSettings(mode=m, top_k=args.top_k, reasons=False), sampling) for m in MODES}
    batch = requests(args.ratings)
    totals = {m: {"wall_s": 0.0, "cpu_s": 0.0, "server_cpu_s": 0.0, "ratings": 0, "calls": 0, "valid": 0,
                  "sum": 0.0} for m in MODES}  # fmt: skip
    for mode in MODES:  # warm-up: connections, code paths
        await asyncio.gather(*(raters[mode].rate(r) for r in batch[: args.inflight]))
    for _ in range(args.rounds):
        for mode in MODES:
            server_cpu = process_cpu_seconds(server_pid)
            wall, cpu = time.perf_counter(), time.process_time()
            results = await asyncio.gather(*(raters[mode].rate(r) for r in batch))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            total = totals[mode]
            total["server_cpu_s"] += process_cpu_seconds(server_pid) - server_cpu
            total["wall_s"] += wall
            total["cpu_s"] += cpu
            total["ratings"] += len(results)
            total["calls"] += sum(usage.calls for _, usage in results)
            valid = [rating.value for rating, _ in results if rating.valid]
            total["valid"] += len(valid)
            total["sum"] += sum(valid)
    meter = meter_of(backend)
    await close_all()
    return totals, {"failures": meter.failures, "retries": meter.retries}


def summary(total: dict[str, float]) -> dict[str, float]:
    return {
        "ratings": int(total["ratings"]),
        "ratings_per_s": round(total["ratings"] / total["wall_s"], 1),
        "client_cpu_ms_per_rating": round(1000 * total["cpu_s"] / total["ratings"], 3),
        "server_cpu_ms_per_request": round(1000 * total["server_cpu_s"] / max(1, total["calls"]), 3),
        "calls_per_rating": round(total["calls"] / total["ratings"], 3),
        "valid_share": round(total["valid"] / total["ratings"], 4),
        "mean_rating": round(total["sum"] / total["valid"], 4) if total["valid"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=1000, help="ratings per mode per round")
    parser.add_argument("--latency", type=float, default=0.2, help="the stub's delay per request (s)")
    parser.add_argument("--inflight", type=int, default=64, help="backend.limits.concurrency, both modes")
    parser.add_argument("--rounds", type=int, default=2, help="generate, logprob, generate, logprob, ...")
    parser.add_argument("--api", default="chat", choices=["chat", "completions"], help="backend.api")
    parser.add_argument("--top-k", type=int, default=20, help="rater.top_k (logprob)")
    parser.add_argument("--http-client", default="aiohttp", choices=["aiohttp", "httpx"], help="backend.http_client")
    args = parser.parse_args()
    server = start_openai_stub(Path(tempfile.mkdtemp(prefix="bench-ratings-")), latency=args.latency, log=False)
    try:
        totals, faults = asyncio.run(drive(args, server.base_url, server.process.pid))
        log = server.stats()["log"]
    finally:
        server.stop()
    modes = {m: summary(totals[m]) for m in MODES}
    latencies = sorted(e["t_end"] - e["t_start"] for e in log if e["path"].endswith("completions"))
    generate, logprob = modes["generate"], modes["logprob"]
    print(json.dumps({
        "benchmark": "agents_ratings", "api": args.api, "http_client": args.http_client, "latency_s": args.latency,
        "inflight": args.inflight, "rounds": args.rounds, "top_k": args.top_k,
        "bound_ratings_per_s": round(args.inflight / args.latency, 1),
        "generate": generate, "logprob": logprob,
        "ratio_ratings_per_s": round(logprob["ratings_per_s"] / generate["ratings_per_s"], 3),
        "ratio_client_cpu_per_rating": round(logprob["client_cpu_ms_per_rating"] / generate["client_cpu_ms_per_rating"], 3),
        **faults,
        "server_latency_median_s": round(statistics.median(latencies), 4) if latencies else None,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
