"""Issue item 1: the same small world through a real OpenAI-compatible server (llama.cpp with SmolLM2 on loopback),
once with `backend=openai` and once with `backend=langchain` (ChatOpenAI pointed at the same server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The smallest world (4 agents, 1 round, 1 rater): llama.cpp serves one request at a time, a few seconds per call.
SMALL_WORLD = [
    "world.size=2", "world.rounds=1", "world.k=1", "run.progress=false", "run.plots=false",
    "agent.sampling.max_tokens=24", "agent.rating_sampling.max_tokens=24", "agent.rating_sampling.temperature=0.2",
    "agent.max_reasks=0", "observer.max_reasks=0",
    "backend.limits.concurrency=2", "backend.limits.timeout_s=120", "backend.limits.max_retries=2",
]  # fmt: skip


def run_world(backend: str, server, run_dir: Path) -> subprocess.CompletedProcess:
    overrides = [f"backend={backend}", f"backend.base_url={server.base_url}", f"backend.model={server.model}"]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # no key: a local server needs none
    script = Path(sys.executable).parent / "sa-simulate"
    return subprocess.run([str(script), *overrides, *SMALL_WORLD, f"hydra.run.dir={run_dir}"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=400)  # fmt: skip


def assert_complete(run_dir: Path, model: str) -> None:
    records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["agent_id"] for r in records) == [0, 1, 2, 3]
    for record in records:
        assert record["agent_model"] == model and record["draft"]["text"] and record["revision"]["text"]
        assert record["feedback"] and record["usage"]["calls"] >= 2 + len(record["feedback"])
        assert record["usage"]["completion_tokens"] > 0
        for feedback in record["feedback"]:
            assert (feedback["rating"] is None) == (not feedback["valid"])
            assert feedback["rating"] is None or 1 <= feedback["rating"] <= 7
        for kind in ("draft", "revision"):
            for aspect in ("alignment", "engagement"):
                value = record["observer"][kind][aspect]
                assert value is None or (isinstance(value, int) and 1 <= value <= 7)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openai", "langchain"])
def test_world_through_llama_cpp_server(backend, llama_server, tmp_path):
    done = run_world(backend, llama_server, tmp_path / backend)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_complete(tmp_path / backend, llama_server.model)
