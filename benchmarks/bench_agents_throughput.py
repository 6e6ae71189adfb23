"""Benchmark (a): calls/s through the full wrapper stack + openai backend against a loopback endpoint.

The endpoint (loopback/openai_server.py, its own process) answers every call after 200 ms; at most 64 calls are
in flight (the stack's concurrency cap), so the bound is 64 / 0.2 s = 320 calls/s. Prints JSON with
  ratio = achieved calls/s / 320          (target >= 0.85)
  client_cpu_ms_per_call                  (time.process_time of this process; target <= 2 ms)
and why the endpoint is not the bottleneck: its server-side latency (should stay ~200 ms) and its own CPU time per
request (from /proc), i.e. the request rate one server core could sustain.

    python -m benchmarks.bench_agents_throughput [--calls 3000] [--latency 0.2] [--inflight 64] [--http-client httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from agents.backends.base import Sampling
from agents.factory import build_backend, close_all, meter_of
from loopback.servers import start_openai_stub

MESSAGES = [
    {"role": "system", "content": "You are a member of a society."},
    {"role": "user", "content": "Now answer this question in a few sentences: is it ever right to lie?"},
]


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(base_url: str, calls: int, inflight: int, http_client: str) -> dict[str, float]:
    node = {
        "name": "openai", "model": "stub-model", "base_url": base_url, "api_key_env": "SA_BENCH_NO_KEY",
        "api": "chat", "max_tokens_param": "max_tokens", "http_client": http_client,
        "limits": {"concurrency": inflight, "rpm": None, "tpm": None, "timeout_s": 30, "max_retries": 6,
                   "backoff_base_s": 1.0, "backoff_max_s": 60.0, "retry_after_max_s": 120.0},
        "prices": {"stub-model": {"prompt": 0.15, "completion": 0.6}},
    }  # fmt: skip
    backend = build_backend(node)
    sampling = Sampling(temperature=1.0, max_tokens=64)
    await asyncio.gather(*(backend.chat(MESSAGES, sampling) for _ in range(inflight)))  # warm-up: connections
    wall, cpu = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(backend.chat(MESSAGES, sampling) for _ in range(calls)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    meter = meter_of(backend)
    await close_all()
    assert all(r.text for r in results)
    return {"wall_s": wall, "cpu_s": cpu, "failures": meter.failures, "retries": meter.retries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--http-client", default="aiohttp", choices=["aiohttp", "httpx"], help="backend.http_client")
    args = parser.parse_args()
    bound = args.inflight / args.latency
    server = start_openai_stub(Path(tempfile.mkdtemp(prefix="bench-agents-")), latency=args.latency, log=False)
    try:
        server_cpu = process_cpu_seconds(server.process.pid)
        run = asyncio.run(drive(server.base_url, args.calls, args.inflight, args.http_client))
        server_cpu = process_cpu_seconds(server.process.pid) - server_cpu
        log = server.stats()["log"][-args.calls :]
    finally:
        server.stop()
    latencies = sorted(e["t_end"] - e["t_start"] for e in log)
    server_cpu_per_request = server_cpu / (args.calls + args.inflight)
    achieved = args.calls / run["wall_s"]
    print(json.dumps({
        "benchmark": "agents_throughput", "http_client": args.http_client, "calls": args.calls, "inflight": args.inflight, "latency_s": args.latency,
        "bound_calls_per_s": bound, "achieved_calls_per_s": round(achieved, 1), "ratio": round(achieved / bound, 3),
        "client_cpu_ms_per_call": round(1000 * run["cpu_s"] / args.calls, 3),
        "failures": run["failures"], "retries": run["retries"],
        "server_latency_median_s": round(statistics.median(latencies), 4),
        "server_latency_p99_s": round(latencies[int(0.99 * (len(latencies) - 1))], 4),
        "server_cpu_ms_per_request": round(1000 * server_cpu_per_request, 3),
        "server_capacity_per_core_calls_per_s": round(1 / server_cpu_per_request) if server_cpu_per_request else None,
        "targets": {"ratio": ">= 0.85", "client_cpu_ms_per_call": "<= 2"},
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
