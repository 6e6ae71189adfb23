"""The episode browser on a paper-sized world: page size and load time (to the first grid) in headless Chromium.

Builds a synthetic 10x10 grid × 50 rounds (5,000 turns in the real record schema, with draft, revision and reason
texts about as long as SmolLM2's), writes `episodes.html` with `environment.browser`, opens it through file:// in the
system Chromium (playwright) and prints one JSON object: file size, write time, and per load the time to the first
grid render (`performance.now()` in the page, from navigation start), to the page being ready, and the DOM size.

    python -m benchmarks.bench_world_browser                       # 10x10, 50 rounds
    python -m benchmarks.bench_world_browser --size 3 --rounds 2 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from environment.browser import PAGE, write_page  # noqa: E402
from environment.headless import chromium  # noqa: E402
from environment.records import SCHEMA_VERSION  # noqa: E402

WORDS = ["the", "answer", "depends", "on", "honesty", "harm", "consent", "fairness", "people", "society", "trust", "law", "context", "help", "others", "respect", "privacy", "safety", "choice", "duty", "care", "kindness", "risk", "benefit"]  # fmt: skip
PERSONAS = ("considerate", "neutral", "unfiltered", "careless", "deceptive")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words)).capitalize() + "."


def _rating(rng: random.Random, unreadable: float) -> float | None:
    return None if rng.random() < unreadable else round(rng.uniform(1, 7), 4)


def _scores(rng: random.Random) -> dict[str, Any]:
    return {"alignment": round(rng.uniform(1, 7), 4), "engagement": round(rng.uniform(1, 7), 4),
            "reasons": {"alignment": _text(rng, 12), "engagement": _text(rng, 10)}}  # fmt: skip


def synthetic_record(rng: random.Random, world: str, round_: int, agent: int, size: int, models: list[str],
                     peers: int = 4, unreadable: float = 0.03) -> dict[str, Any]:  # fmt: skip
    """One turn in the episode record schema (as environment.backscatter writes it), with random but sane values."""
    feedback = []
    for peer in rng.sample([a for a in range(size * size) if a != agent], min(peers, size * size - 1)):
        rating = _rating(rng, unreadable)
        feedback.append({"peer_id": peer, "peer_model": models[peer % len(models)], "peer_persona": PERSONAS[peer % 5],
                         "rating": rating, "reason": _text(rng, 24), "valid": rating is not None, "attempts": 1,
                         "mode": "generate"})  # fmt: skip
    hits = [{"question": _text(rng, 10) + "?", "answer": _text(rng, 18), "similarity": round(rng.uniform(0.5, 0.9), 4),
             "round": rng.randrange(-1, max(round_, 0) + 1), "source": "prior", "rating": None}
            for _ in range(rng.randrange(0, 3))]  # fmt: skip
    return {
        "schema_version": SCHEMA_VERSION, "world_id": world, "round": round_, "agent_id": agent,
        "position": [agent // size, agent % size], "agent_model": models[agent % len(models)],
        "agent_persona": PERSONAS[agent % 5], "question_id": f"sa-q{rng.randrange(200):04d}",
        "question": _text(rng, 12) + "?", "question_repeat": False,
        "draft": {"text": _text(rng, 50), "memory_hits": hits}, "feedback": feedback,
        "revision": {"text": _text(rng, 55)},
        "observer": {"model": models[0], "draft": _scores(rng), "revision": _scores(rng)},
        "usage": {"calls": 2 + 2 * peers, "prompt_tokens": 1800, "completion_tokens": 200, "seconds": 3.5},
    }  # fmt: skip


def synthetic_world(run_dir: Path, size: int, rounds: int, models: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """Write a run dir (episodes.jsonl, world.json, metrics.json) of size² × rounds synthetic turns; return them."""
    rng = random.Random(seed)
    world = f"synthetic-seed{seed}"
    records = [synthetic_record(rng, world, r, a, size, models) for r in range(rounds) for a in range(size * size)]
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "episodes.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    (run_dir / "world.json").write_text(json.dumps({"world_id": world, "world": {"size": size, "seed": seed}}))
    (run_dir / "metrics.json").write_text(json.dumps({"stop_reason": "rounds: synthetic", "records": len(records)}))
    return records


def measure_load(browser: Any, page: Path) -> dict[str, float]:
    """Open the page in a fresh tab: ms to the first grid (in-page clock), ms until ready (wall), DOM nodes."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    started = time.perf_counter()
    tab.goto(page.resolve().as_uri())
    tab.wait_for_selector("body[data-ready='1']", timeout=120_000)
    ready = (time.perf_counter() - started) * 1000
    figures = tab.evaluate("""() => ({first_grid_ms: window.firstGridMs, dom_nodes: document.getElementsByTagName('*').length,
        grid_cells: document.querySelectorAll('#grid .cell:not(.empty)').length,
        list_rows: document.querySelectorAll('#list-rows .row').length})""")
    tab.close()
    if errors:
        sys.exit(f"page errors: {errors[:3]}")
    return {**figures, "ready_ms_wall": round(ready, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--models", type=int, default=2, help="models in the (mixed) society")
    parser.add_argument("--repeats", type=int, default=3, help="page loads (the median is reported)")
    parser.add_argument("--out", type=Path, default=None, help="run dir (default: a temporary folder)")
    args = parser.parse_args()
    run_dir = args.out or Path(tempfile.mkdtemp(prefix="bench-world-browser-")) / "run"
    records = synthetic_world(run_dir, args.size, args.rounds, [f"model-{i}" for i in range(args.models)])
    started = time.perf_counter()
    page = write_page(run_dir)
    write_s = time.perf_counter() - started
    with chromium() as browser:
        loads = [measure_load(browser, page) for _ in range(max(1, args.repeats))]
    print(json.dumps({
        "benchmark": "world_browser", "world": f"{args.size}x{args.size}, {args.rounds} rounds", "turns": len(records),
        "file_bytes": page.stat().st_size, "file_mb": round(page.stat().st_size / 2**20, 2),
        "write_s": round(write_s, 3),
        "first_grid_ms_median": round(statistics.median(x["first_grid_ms"] for x in loads), 1),
        "ready_ms_wall_median": round(statistics.median(x["ready_ms_wall"] for x in loads), 1),
        "dom_nodes": loads[-1]["dom_nodes"], "grid_cells": loads[-1]["grid_cells"], "list_rows": loads[-1]["list_rows"],
        "loads": loads, "page": str(run_dir / PAGE),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
