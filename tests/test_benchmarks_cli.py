"""Every benchmark starts the way the README and `make bench` run it: `python -m benchmarks.<name>` from the root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py") if p.stem != "bench_train_common")


def test_benchmarks_are_found():
    assert len(SCRIPTS) >= 9, SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_module_starts(name):
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
