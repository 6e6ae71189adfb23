"""The one budget, `stopping.budget`, on the world's usage total: every backend and the embedder together, and on
resume the episodes of the earlier process; the removed `backend.budget` fails in one line naming it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from agents.factory import build_backend, build_embedder, close_all
from conf.errors import UserError
from environment.records import read_episodes
from environment.simulate import simulate
from loopback.fixtures import openai_stub  # noqa: F401 - fixture
from loopback.servers import RunningServer
from tests.test_environment_world_society import world_config

SA_SIMULATE = str(Path(sys.executable).with_name("sa-simulate"))


@pytest.fixture
def stub(openai_stub) -> RunningServer:  # noqa: F811
    return openai_stub(latency=0.0)


def test_the_budget_counts_the_embedder_and_a_resume_starts_from_what_was_spent(
    tmp_path: Path, stub: RunningServer
) -> None:
    first = asyncio.run(simulate(world_config(stub, "world.size=2", "world.rounds=1"), tmp_path))
    assert first["stop_reason"].startswith("rounds") and first["records"] == 4
    assert first["calls"] == sum(b["calls"] for b in first["backends"])  # chat backend and embedder
    assert next(b for b in first["backends"] if b["model"] == "stub-embed")["calls"] >= 1
    spent = sum(r["usage"]["calls"] for r in read_episodes(tmp_path / "episodes.jsonl"))
    cfg = world_config(stub, "world.size=2", "world.rounds=3", f"stopping.budget.max_calls={spent}")
    again = asyncio.run(simulate(cfg, tmp_path))
    # The earlier episodes reach the budget: no turn starts; the total also holds this process's embedder calls
    # (priors and stored questions re-embedded), the same figure metrics.json reports.
    assert again["interactions_this_run"] == 0 and again["records"] == 4
    assert again["stop_reason"] == f"budget: {again['calls']} calls ≥ max_calls {spent}" and again["calls"] > spent


def test_a_backend_budget_is_refused_naming_stopping_budget(stub: RunningServer) -> None:
    node = {"name": "openai", "model": "stub", "base_url": stub.base_url, "api_key_env": "SA_TEST_NO_KEY"}
    empty = {"max_calls": None, "max_tokens": None, "max_cost_usd": None}  # as a config saved before 2026-12
    try:
        assert build_backend({**node, "budget": empty}).model == "stub"
        with pytest.raises(UserError, match=r"^backend.budget was removed; use sa-simulate's stopping.budget"):
            build_backend({**node, "budget": {**empty, "max_cost_usd": 1.0}})
        with pytest.raises(UserError, match=r"^embedder.budget was removed; use sa-simulate's stopping.budget"):
            build_embedder({**node, "model": "stub-embed", "budget": {"max_calls": 3}})
    finally:
        asyncio.run(close_all())


def test_the_old_budget_override_fails_in_one_line_naming_the_new_key(tmp_path: Path) -> None:
    done = subprocess.run([SA_SIMULATE, "backend.budget.max_cost_usd=1", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("sa-simulate: error: backend.budget.max_cost_usd was removed; use sa-simulate's "
                               "stopping.budget.max_calls, max_tokens or max_cost (USD)")  # fmt: skip
    assert not (tmp_path / "run").exists()
