"""sa-train under `accelerate launch` with 2 CPU processes (gloo) makes the single-process run: the same optimizer
steps, LR curve, groups and K-samples per epoch, epochs and (up to float rounding) weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from tests.test_training_train import data_dir, run, weights  # noqa: F401  (data_dir is a fixture)

COMMON = (
    "loss=stable_alignment", "train.batch_size=4", "train.epochs=2", "train.max_steps=-1", "train.trace=true",
    "model.device=cpu",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trace(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted((folder / "trace").glob("rank-*.jsonl")) for line in path.open()]


def lr_curve(records: list[dict]) -> dict[int, float]:
    curve: dict[int, float] = {}
    for record in records:
        assert curve.setdefault(record["step"], record["lr"]) == record["lr"]  # one LR per step, on every process
    return curve


def seen(records: list[dict]) -> dict[tuple[int, int], list[tuple[int, tuple[int, ...]]]]:
    """(epoch, step) → sorted (data row, K-sampled responses) trained in it, over all processes."""
    out: dict[tuple[int, int], list] = {}
    for record in records:
        if record["weight"] > 0:
            rows = zip(record["rows"], map(tuple, record["picks"]), strict=True)
            out.setdefault((record["epoch"], record["step"]), []).extend(rows)
    return {key: sorted(value) for key, value in out.items()}


def test_two_processes_make_the_same_run_as_one(tmp_path, data_dir, tiny_model_dir):  # noqa: F811
    one, two = tmp_path / "one", tmp_path / "two"
    # one process, the whole global batch (4 groups) in one forward
    single = run(one, data_dir, tiny_model_dir, *COMMON, "train.groups_per_batch=4")
    # two processes at 1 group per forward: 2 micro-batches each per step (accumulation), the last step of an epoch
    # (3 groups) leaves one slot empty
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--main_process_port", str(free_port()), "-m", "training.train", f"data={data_dir}",
        f"model.name={tiny_model_dir}", "train.groups_per_batch=1", "train.lr=1e-3", "train.max_length=128",
        "train.max_prompt_length=96", *COMMON, f"hydra.run.dir={two}",
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    finals = [line for line in result.stdout.splitlines() if line.startswith("sa-train: ") and "→ checkpoint" in line]
    assert len(finals) == 1, result.stdout[-2000:]  # the main process says it once, not once per process
    double = json.loads((two / "summary.json").read_text())
    assert double["processes"] == 2 and double["grad_accum"] == 2 and single["processes"] == 1
    # 11 groups at 4 per step: 3 optimizer steps per epoch, 2 epochs, whatever the number of processes
    assert single["steps"] == double["steps"] == 6 and single["epochs_done"] == double["epochs_done"] == 2
    a, b = trace(one), trace(two)
    assert {r["step"] for r in b} == set(range(6))
    assert lr_curve(b) == lr_curve(a)  # warm-up and cosine per optimizer step, no N× stepping, no wrap
    assert lr_curve(a)[5] < lr_curve(a)[4] < lr_curve(a)[0]
    assert seen(b) == seen(a)  # the same groups and K-samples in every step
    for epoch in (0, 1):  # every group exactly once per epoch across the processes
        rows = [row for (e, _), items in seen(b).items() if e == epoch for row, _ in items]
        assert sorted(rows) == list(range(11))
    assert {r["weight"] for r in b} == {0.0, 1.0, 4 / 3}  # 3 groups over 4 slots: one empty, three at 4/3
    assert abs(double["final"]["loss"] - single["final"]["loss"]) < 1e-4  # the logged loss is the global mean
    w1, w2 = weights(one), weights(two)
    assert all(torch.allclose(w1[k], w2[k], atol=1e-4) for k in w1)  # each group's loss weighs the same
