"""Crash safety: SIGKILL `sa-simulate` at random moments, resume into the same run dir, lose and duplicate nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from environment.records import read_episodes, record_key, validate_record
from loopback.fixtures import openai_stub  # noqa: F401 - fixture
from memory.snapshot import load_all
from tests.test_environment_cli import SA_SIMULATE, stub_overrides

SIZE, ROUNDS, WORLD = 3, 6, "sandbox-seed0"


def complete_records(path: Path) -> list[dict[str, Any]]:
    """The complete lines of an episodes file as a killed run left it (a cut-off last line is not a record yet)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [validate_record(json.loads(line)) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]


def revisions_by_agent(records: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """What each agent's memory must hold from its own turns: the latest revision per question."""
    latest: dict[int, dict[str, tuple[int, str]]] = {}
    for record in records:
        mine = latest.setdefault(record["agent_id"], {})
        held = mine.get(record["question"])
        if held is None or record["round"] >= held[0]:
            mine[record["question"]] = (record["round"], record["revision"]["text"])
    return {agent: {q: text for q, (_, text) in items.items()} for agent, items in latest.items()}


def assert_memory_matches(run_dir: Path, records: list[dict[str, Any]], final: bool) -> None:
    """The live memory snapshot equals seed priors + the revisions of the first `meta.episodes` records."""
    if not (run_dir / "memory" / "CURRENT").exists():
        assert not final
        return
    stores, meta = load_all(run_dir / "memory")
    n = meta["episodes"]
    assert n <= len(records) and (n == len(records) or not final)
    expected = revisions_by_agent(records[:n])
    for agent, store in stores.items():
        held = {r.question: r.answer for r in store.records() if r.source == "revision"}
        assert held == expected.get(agent, {}), f"agent {agent} memory disagrees with the first {n} episodes"


def wait_for_lines(path: Path, target: int, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while len(complete_records(path)) < target and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def test_sigkill_at_random_moments_then_resume(tmp_path: Path, openai_stub) -> None:  # noqa: F811
    server = openai_stub(latency=0.08, latency_jitter=0.1, seed=7)
    run_dir = tmp_path / "run"
    episodes = run_dir / "episodes.jsonl"
    args = [
        *stub_overrides(server), f"world.size={SIZE}", f"world.rounds={ROUNDS}", "run.snapshot_every_s=0.25",
        "run.fsync_every=1", "run.plots=false", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    rng = random.Random(20261127)
    kills, seen = 0, []
    for attempt in range(4):
        before = len(complete_records(episodes))
        target = before + (0 if attempt == 0 else rng.randint(1, 12))  # the first kill lands during start-up
        delay = rng.uniform(0.3, 1.5) if attempt == 0 else rng.uniform(0.0, 0.3)
        process = subprocess.Popen([SA_SIMULATE, *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_for_lines(episodes, target, process)
            time.sleep(delay)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                kills += 1
            process.wait(30)
        records = complete_records(episodes)
        keys = [record_key(r) for r in records]
        assert len(keys) == len(set(keys)), "a killed run left a duplicate turn"
        assert_memory_matches(run_dir, records, final=False)
        seen.append(len(records))
    total = SIZE * SIZE * ROUNDS
    assert kills >= 3 and sum(0 < n < total for n in seen) >= 2, seen  # killed mid-run, not only at start or end
    print("records after each kill:", seen)

    final = subprocess.run([SA_SIMULATE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert final.returncode == 0, final.stderr[-2000:]
    records = list(read_episodes(episodes))
    counts = Counter(record_key(r) for r in records)
    assert set(counts) == {(WORLD, r, a) for r in range(ROUNDS) for a in range(SIZE * SIZE)}
    assert max(counts.values()) == 1
    assert_memory_matches(run_dir, records, final=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["records"] == SIZE * SIZE * ROUNDS and metrics["stop_reason"].startswith("rounds")
