"""Interactions/s of one world on an endpoint pool: two healthy endpoints vs three with one killed mid-run.

Both runs are `sa-simulate backend=openai backend.base_url=[...]` in a subprocess against loopback OpenAI-compatible
stubs (loopback/openai_server.py) with a fixed latency per request, `backend.limits.scope=per_endpoint` and a
small per-endpoint concurrency, so the number of live endpoints sets the pace:
- two: base_url = [A, B], both healthy throughout;
- three_one_killed: base_url = [A, B, C]; C is stopped (SIGTERM, then nothing listens) once it has served
  `--kill-after` of the run's expected requests, so the run ends on the same two endpoints as `two`.
The rate is metrics.json `interactions_per_s` (first call to last record). If failover costs nothing,
three_one_killed is a little faster than two (it had a third endpoint before the kill): `ideal_ratio` =
1 / (1 - f/3), with f the share of answered calls made before the kill. Every run must hold every turn exactly once.
Prints one JSON object: both runs' rates and per-endpoint counts, `ratio` (three_one_killed / two) and whether it is
within 10 % of 1.

    python -m benchmarks.bench_world_endpoint_pool                     # 6x6, 3 rounds, 0.2 s per call
    python -m benchmarks.bench_world_endpoint_pool --size 2 --rounds 2 --latency 0.02
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from environment.records import read_episodes, record_key
from loopback.servers import RunningServer, start_openai_stub

REPO = Path(__file__).resolve().parents[1]

CALLS_PER_TURN = 10  # draft, k=4 peer ratings, 2 observer scores, revision, 2 observer scores


def simulate(urls: list[str], args: argparse.Namespace, run_dir: Path) -> subprocess.Popen:
    pool = "[" + ",".join(urls) + "]"
    command = [
        str(Path(sys.executable).with_name("sa-simulate")), "backend=openai", f"backend.base_url={pool}",
        "backend.model=stub", "backend.limits.scope=per_endpoint", f"backend.limits.concurrency={args.concurrency}",
        "backend.limits.timeout_s=60", "backend.limits.cooldown_s=2", "embedder=openai", f"embedder.base_url={pool}",
        "embedder.model=stub-embed", "embedder.dim=384", f"world.size={args.size}", f"world.rounds={args.rounds}",
        "run.progress=false", "run.plots=false", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, run_dir: Path, args: argparse.Namespace) -> dict:
    _, err = process.communicate()
    if process.returncode != 0:
        sys.exit(f"sa-simulate failed: {err[-3000:]}")
    records = list(read_episodes(run_dir / "episodes.jsonl"))
    counts = Counter(record_key(r) for r in records)
    turns = {(rnd, agent) for _, rnd, agent in counts}
    complete = turns == {(r, a) for r in range(args.rounds) for a in range(args.size**2)} and max(counts.values()) == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    chat = next(b for b in metrics["backends"] if b["model"] == "stub")
    return {"interactions": len(records), "every_turn_once": complete,
            "interactions_per_s": metrics["interactions_per_s"], "collection_s": metrics["collection_seconds"],
            "calls": chat["calls"], "failures": chat["failures"], "retries": chat["retries"],
            "endpoints": [{k: e[k] for k in ("url", "calls", "ok", "failures", "benched")} | {"p50_s": (e["latency_s"] or {}).get("p50")}
                          for e in chat["endpoints"]]}  # fmt: skip


def run_two(servers: list[RunningServer], args: argparse.Namespace, work: Path) -> dict:
    run_dir = work / "two"
    return finish(simulate([s.base_url for s in servers[:2]], args, run_dir), run_dir, args)


def run_three_one_killed(servers: list[RunningServer], args: argparse.Namespace, work: Path) -> dict:
    run_dir = work / "three_one_killed"
    victim = servers[2]
    process = simulate([s.base_url for s in servers], args, run_dir)
    expected = args.size**2 * args.rounds * CALLS_PER_TURN
    threshold = max(1, round(args.kill_after * expected))
    while process.poll() is None and len(victim.log_entries()) < threshold:
        time.sleep(0.02)
    killed_while_running = process.poll() is None
    victim.stop()
    result = finish(process, run_dir, args)
    answered = sum(e["ok"] for e in result["endpoints"])
    share = result["endpoints"][2]["ok"] / answered if answered else 0.0
    return {**result, "killed_while_running": killed_while_running, "victim_share_of_answered_calls": round(share, 4),
            "ideal_ratio": round(1 / (1 - share / 3), 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per stub request")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight per endpoint")
    parser.add_argument("--kill-after", type=float, default=0.05,
                        help="stop the third endpoint once it has served this share of the run's expected calls")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-world-endpoint-pool-"))
    servers = [start_openai_stub(work / "stubs", latency=args.latency, log=True) for _ in range(3)]
    try:
        two = run_two(servers, args, work)
        killed = run_three_one_killed(servers, args, work)
    finally:
        for server in servers:
            server.stop()
    ratio = killed["interactions_per_s"] / two["interactions_per_s"]
    print(json.dumps({
        "benchmark": "world_endpoint_pool", "world": f"{args.size}x{args.size}, {args.rounds} rounds",
        "latency_s_per_call": args.latency, "concurrency_per_endpoint": args.concurrency,
        "two": two, "three_one_killed": killed, "ratio": round(ratio, 4),
        "within_10_percent": abs(ratio - 1) <= 0.10,
    }, indent=1))  # fmt: skip
    if not (two["every_turn_once"] and killed["every_turn_once"]):
        sys.exit("an episode file does not hold exactly the expected turns")


if __name__ == "__main__":
    main()
