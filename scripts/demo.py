"""`make demo`: the four stages end to end on the embedded default (SmolLM2-135M-Instruct, all-MiniLM-L6-v2).

simulate (3×3 world, 2 rounds) → build data → train (Stable Alignment, a few steps) → evaluate (HHH before vs after)
and print where the markdown report is. Every stage is the real console script with Hydra overrides, so each line
printed here can be re-run by hand.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run(stage: str, args: list[str], timings: dict[str, float]) -> None:
    """Run one console script, stream its output, stop the demo on failure."""
    command = [str(BIN / args[0]), *args[1:]]
    print(f"\n=== {stage}: {shlex.join([args[0], *args[1:]])}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command)
    timings[stage] = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"demo: {stage} failed with exit code {result.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="folder for all outputs (default: runs/demo)")
    parser.add_argument("--train-steps", type=int, default=12)
    out = Path(parser.parse_args().out).resolve()
    steps = parser.parse_args().train_steps
    world, data, ckpt, report = out / "world", out / "data", out / "checkpoint", out / "report"
    timings: dict[str, float] = {}
    total = time.perf_counter()
    run("simulate", ["sa-simulate", "preset=demo", f"hydra.run.dir={world}"], timings)
    run("build data", ["sa-build-data", f"inputs=[{world}]", f"hydra.run.dir={data}"], timings)
    run(
        "train",
        # 4 groups per step: the default is the reference's 64, over a minute per step on 2 CPU cores
        [
            "sa-train",
            f"data={data}",
            "loss=stable_alignment",
            f"train.max_steps={steps}",
            "train.batch_size=4",
            f"hydra.run.dir={ckpt}",
        ],
        timings,
    )
    run(
        "evaluate",
        [
            "sa-eval",
            "eval_preset=demo",
            f"models=[embedded:smollm2,{ckpt}]",
            "labels=[base,stable_alignment]",
            f"world_dir={world}",
            f"hydra.run.dir={report}",
        ],
        timings,
    )
    timings["total"] = time.perf_counter() - total
    print("\n=== demo finished: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    print(f"report: {report / 'report.md'}")


if __name__ == "__main__":
    main()
