"""Every benchmark starts the way the README and `make bench` run it: `python -m benchmarks.<name>` from the root;
the cheap ones also run on a toy size and print their JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py") if p.stem != "bench_train_common")


def test_benchmarks_are_found():
    assert len(SCRIPTS) >= 10 and "bench_agents_ratings" in SCRIPTS, SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_module_starts(name):
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_ratings_benchmark_on_a_toy_size():
    """logprob vs generate rating throughput against the loopback stub: both modes rate every answer, no failures."""
    args = ["--ratings", "24", "--inflight", "8", "--latency", "0.02", "--rounds", "1"]
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_agents_ratings", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["benchmark"] == "agents_ratings" and result["failures"] == 0
    for mode in ("generate", "logprob"):
        figures = result[mode]
        assert figures["ratings"] == 24 and figures["valid_share"] == 1.0 and figures["calls_per_rating"] == 1.0
        assert figures["ratings_per_s"] > 0 and figures["client_cpu_ms_per_rating"] > 0
        assert 1 <= figures["mean_rating"] <= 7
    assert result["ratio_ratings_per_s"] > 0 and result["ratio_client_cpu_per_rating"] > 0
