"""A whole world in-process (config composed by Hydra, roles on the loopback stub): mixed society, sampling per call
type, movement, memory growth, plateau stop written to metrics.json."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from conf import CONFIG_DIR
from environment.records import read_episodes
from environment.simulate import simulate
from loopback.fixtures import openai_stub  # noqa: F401 - fixture
from loopback.servers import RunningServer
from tests.test_environment_cli import stub_overrides
from training.build_data import build_groups


def world_config(server: RunningServer, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("simulate", overrides=[*stub_overrides(server), "run.plots=false", *overrides])


@pytest.fixture
def stub(openai_stub) -> RunningServer:  # noqa: F811
    return openai_stub(latency=0.0, log=True)


def test_mixed_society_sampling_per_call_type_and_memory_growth(tmp_path: Path, stub: RunningServer) -> None:
    cfg = world_config(stub, "world.size=3", "world.rounds=3", "world.movement=random_walk", "world.move_fraction=1.0",
                       "agent.sampling.max_tokens=7", "agent.rating_sampling.max_tokens=40",
                       "questions.limit=2")  # fmt: skip
    groups = []
    for name, fraction in (("small", 1 / 3), ("large", 2 / 3)):
        backend = OmegaConf.to_container(cfg.backend, resolve=True)
        backend["model"] = f"stub-{name}"
        groups.append({"name": name, "fraction": fraction, "backend": backend})
    OmegaConf.update(cfg, "society.groups", groups, force_add=True)
    metrics = asyncio.run(simulate(cfg, tmp_path))
    records = list(read_episodes(tmp_path / "episodes.jsonl"))
    assert len(records) == 27 and metrics["stop_reason"].startswith("rounds")

    models = {r["agent_id"]: r["agent_model"] for r in records}
    assert Counter(models.values()) == {"stub-small": 3, "stub-large": 6}
    assert all(f["peer_model"] == models[f["peer_id"]] for r in records for f in r["feedback"])
    assert len({tuple(r["position"]) for r in records if r["agent_id"] == 0}) > 1  # agent 0 moved

    answers = [r[key]["text"] for r in records for key in ("draft", "revision")]
    assert max(len(a.split()) for a in answers) == 7  # the stub truncates at max_tokens: answers got 7
    sent = [e for e in stub.stats()["log"] if e["path"].endswith("/chat/completions")]
    assert max(e["completion_tokens"] for e in sent) > 7  # ratings were allowed more (40)

    # Each agent walks the 2 questions without repeats; in round 2 it is asked its round-0 question again (flagged,
    # counted), and its draft recalls the revision it wrote then, not a prior.
    assert [r["question_repeat"] for r in sorted(records, key=lambda r: r["round"])] == [False] * 18 + [True] * 9
    assert metrics["questions"] == {"turns": 27, "distinct": 2, "repeats": 9}
    by_turn = {(r["agent_id"], r["round"]): r for r in records}
    for agent in range(9):
        first, again = by_turn[agent, 0], by_turn[agent, 2]
        assert again["question"] == first["question"] != by_turn[agent, 1]["question"]
        (hit,) = again["draft"]["memory_hits"]
        assert (hit["source"], hit["round"], hit["answer"]) == ("revision", 0, first["revision"]["text"])
    assert metrics["memory_recall"]["revision_hits"] >= 9
    _, stats, _ = build_groups([tmp_path / "episodes.jsonl"], 4.0)
    assert stats["question_repeats"] == 9  # the data card's count


def test_plateau_stop_reason_lands_in_metrics(tmp_path: Path, stub: RunningServer) -> None:
    cfg = world_config(stub, "world.size=2", "world.rounds=8", "stopping=plateau", "stopping.plateau.window=1",
                       "stopping.plateau.epsilon=100")  # fmt: skip
    metrics = asyncio.run(simulate(cfg, tmp_path))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["stop_reason"] == metrics["stop_reason"] and saved["stop_reason"].startswith("plateau")
    assert saved["rounds_completed"] >= 2 and saved["records"] < 4 * 8


def test_cost_budget_from_backend_prices_stops_the_world(tmp_path: Path, stub: RunningServer) -> None:
    cfg = world_config(stub, "world.size=3", "world.rounds=20", "stopping.budget.max_cost=0.5")
    OmegaConf.update(cfg, "backend.prices", {"stub": {"prompt": 100.0, "completion": 100.0}}, force_add=True)
    metrics = asyncio.run(simulate(cfg, tmp_path))
    assert metrics["stop_reason"].startswith("budget: cost") and metrics["cost"] >= 0.5
    assert 0 < metrics["records"] < 9 * 20  # turns in flight at the limit finish; no new turn starts
