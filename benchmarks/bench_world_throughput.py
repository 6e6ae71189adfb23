"""Interactions/s of one 10x10 round: our async world vs a reference-style collector, same 1 s-per-call endpoint.

Both talk to the same loopback OpenAI-compatible stub (loopback/openai_server.py) whose every request (chat and
embeddings) takes `--latency` seconds.
- ours: `sa-simulate backend=openai embedder=openai world.size=10 world.rounds=1` in a subprocess (calls capped at
  `--concurrency` in flight); the rate is metrics.json `interactions_per_s`: interactions over the seconds from the
  first call (the round's question embeddings, one batched request) to the last record flushed.
- reference-style: the reference's structure (agi-templar/Stable-Alignment, sandbox/world.py) — 10 threads, a
  synchronous `openai.OpenAI` client, the calls of a turn made one after another, same prompts: observer alignment +
  engagement of the draft, k=4 peer ratings, the revision, observer alignment + engagement of the revision, and the
  reference's question embeddings: one for the draft's memory lookup, one per peer's lookup, one at the memory write
  (6 per turn for k=4; they are not cached across agents there). `reference_style` makes all of them (16 calls per
  turn); `reference_style_one_embedding` makes only the draft's (11 calls), a lower bound on the reference's time.
The stub's request log shows whether the independent calls of a turn (peer ratings, observer scores) overlapped.
Prints one JSON object with the figures and both ratios; the target (>= 20x) is checked against `reference_style`.

    python -m benchmarks.bench_world_throughput                 # 10x10 round, 1 s per call
    python -m benchmarks.bench_world_throughput --size 4 --latency 0.2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agents import prompts
from agents.ratings import parse_rating
from environment.grid import Grid, Layout, pick_raters
from environment.questions import QuestionSchedule, load_questions
from loopback.servers import RunningServer, start_openai_stub


def run_ours(server: RunningServer, size: int, concurrency: int, work: Path) -> dict:
    url = server.base_url
    run_dir = work / "ours"
    command = [
        str(Path(sys.executable).with_name("sa-simulate")), "backend=openai", f"backend.base_url={url}",
        "backend.model=stub", f"backend.limits.concurrency={concurrency}", "backend.limits.timeout_s=120",
        "embedder=openai", f"embedder.base_url={url}", "embedder.model=stub-embed", "embedder.dim=384",
        f"world.size={size}", "world.rounds=1", "run.plots=false", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if result.returncode != 0:
        sys.exit(f"sa-simulate failed: {result.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"interactions": metrics["records"], "interactions_per_s": metrics["interactions_per_s"],
            "collection_s": metrics["collection_seconds"], "wall_s_incl_startup": round(wall, 2),
            "calls": metrics["calls"], "client_process_cpu_s": round(cpu, 2)}  # fmt: skip


def run_reference(server: RunningServer, size: int, k: int, threads: int, all_embeddings: bool) -> dict:
    """The reference's collector: a thread pool, each turn's calls one after another, a synchronous client."""
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="sk-no-key-needed", max_retries=0, timeout=120)
    n = size * size
    layout = Layout(Grid(size, float(size // 2), torus=True))
    schedule = QuestionSchedule(load_questions("builtin"), n, 0, "reference")

    def chat(messages: list[dict[str, str]], max_tokens: int) -> str:
        reply = client.chat.completions.create(model="stub", messages=messages, max_tokens=max_tokens)
        return reply.choices[0].message.content or ""

    def embed(text: str) -> None:
        client.embeddings.create(model="stub-embed", input=[text])

    def observe(question: str, answer: str) -> None:
        for aspect in ("alignment", "engagement"):
            parse_rating(chat(prompts.observer_messages(aspect, question, answer), 64))

    def turn(agent: int) -> None:
        import random

        question = schedule.question(0, agent).text
        embed(question)  # the draft's memory lookup
        draft = chat(prompts.draft_messages(question, []), 256)
        observe(question, draft)
        feedback = []
        for peer in pick_raters(layout, agent, 0, k, 0.0, random.Random(agent)):
            if all_embeddings:
                embed(question)  # the peer's memory lookup
            feedback.append((peer, parse_rating(chat(prompts.feedback_messages(question, draft, []), 64))))
        revision = chat(prompts.revise_messages(question, draft, feedback), 256)
        observe(question, revision)
        if all_embeddings:
            embed(question)  # the memory write

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(turn, range(n)))
    seconds = time.perf_counter() - started
    calls_per_turn = 1 + 1 + 2 + k + 1 + 2 + ((k + 1) if all_embeddings else 0)
    return {"interactions": n, "interactions_per_s": round(n / seconds, 4), "collection_s": round(seconds, 2),
            "calls": n * calls_per_turn}  # fmt: skip


def overlap(log: list[dict]) -> dict:
    """Peak number of requests in flight at once, from the stub's request log."""
    events = sorted([(e["t_start"], 1) for e in log] + [(e["t_end"], -1) for e in log])
    peak = active = 0
    for _, step in events:
        active += step
        peak = max(peak, active)
    return {"requests": len(log), "peak_in_flight": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per request at the stub")
    parser.add_argument("--concurrency", type=int, default=1024, help="our backend.limits.concurrency")
    parser.add_argument("--threads", type=int, default=10, help="reference-style collector threads")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-world-throughput-"))
    server = start_openai_stub(work / "stub", latency=args.latency, log=True)
    try:
        ours = run_ours(server, args.size, args.concurrency, work)
        ours.update(overlap(server.stats()["log"]))
        references = {}
        for name, all_embeddings in (("reference_style", True), ("reference_style_one_embedding", False)):
            server.stop()
            server = start_openai_stub(work / f"stub-{name}", latency=args.latency, log=True)
            references[name] = run_reference(server, args.size, 4, args.threads, all_embeddings)
            references[name].update(overlap(server.stats()["log"]))
    finally:
        server.stop()
    ratios = {
        name: round(ours["interactions_per_s"] / ref["interactions_per_s"], 2) for name, ref in references.items()
    }
    print(json.dumps({
        "world": f"{args.size}x{args.size}, 1 round", "latency_s_per_call": args.latency, "ours": ours, **references,
        "ratio_interactions_per_s": ratios["reference_style"],
        "ratio_vs_reference_style_one_embedding": ratios["reference_style_one_embedding"],
        # 5 = question embeddings → draft → ratings ∥ observer → revise → observer
        "ours_collection_in_call_latencies": round(ours["collection_s"] / args.latency, 2),
        "target": "ratio_interactions_per_s >= 20", "pass": ratios["reference_style"] >= 20,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
