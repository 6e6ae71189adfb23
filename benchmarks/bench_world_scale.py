"""The paper-sized world end to end: a 10x10 grid, 50 rounds, against the loopback OpenAI-compatible stub.

Runs `sa-simulate` (a real subprocess, every role and the embedder on the stub) and checks that the run dir ends with
exactly size² × rounds complete records, one per (world, round, agent). Prints one JSON line with the wall time.

    python benchmarks/bench_world_scale.py            # 10x10, 50 rounds
    python benchmarks/bench_world_scale.py --size 4 --rounds 5 --latency 0.05
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
from loopback.servers import start_openai_stub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per stub call")
    parser.add_argument("--out", type=Path, default=None, help="run dir (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-world-scale-"))
    run_dir = args.out or work / "run"
    server = start_openai_stub(work / "stub", latency=args.latency, log=False)
    url = server.base_url
    command = [
        str(Path(sys.executable).with_name("sa-simulate")), "backend=openai", f"backend.base_url={url}",
        "backend.model=stub", "backend.limits.concurrency=512", "embedder=openai", f"embedder.base_url={url}",
        "embedder.model=stub-embed", "embedder.dim=384", f"world.size={args.size}", f"world.rounds={args.rounds}",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    try:
        started = time.perf_counter()
        result = subprocess.run(command, cwd=work, capture_output=True, text=True)
        wall = time.perf_counter() - started
    finally:
        server.stop()
    if result.returncode != 0:
        sys.exit(f"sa-simulate failed: {result.stderr[-3000:]}")
    records = list(read_episodes(run_dir / "episodes.jsonl"))
    counts = Counter(record_key(r) for r in records)
    expected = {(r["world_id"], rnd, a) for r in records[:1] for rnd in range(args.rounds) for a in range(args.size**2)}
    complete = set(counts) == expected and max(counts.values()) == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(json.dumps({
        "world": f"{args.size}x{args.size}, {args.rounds} rounds", "stub_latency_s": args.latency,
        "records": len(records), "expected": args.size**2 * args.rounds, "exact_turn_set_no_duplicates": complete,
        "wall_s_incl_startup": round(wall, 1), "simulate_s": metrics["wall_seconds"],
        "interactions_per_s": metrics["interactions_per_s"], "calls": metrics["calls"],
        "invalid_peer_ratings": metrics["invalid_peer_ratings"], "stop_reason": metrics["stop_reason"],
        "embedder_calls_per_interaction": metrics["embedder"]["calls_per_interaction"], "run_dir": str(run_dir),
    }))  # fmt: skip
    if not complete:
        sys.exit("the episode file does not hold exactly the expected turns")


if __name__ == "__main__":
    main()
