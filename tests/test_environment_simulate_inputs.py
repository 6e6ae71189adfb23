"""sa-simulate against hostile input and interrupted runs: every refusal is one line (exit 2) before any file is
written, a refused resume leaves the folder's config as it was, Ctrl-C is one line (exit 130) and a re-run resumes to
the episodes of an uninterrupted run, and metrics.json's top-level usage is the sum over the backends."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from conf.errors import UserError
from environment.records import EpisodeFormatError, read_episodes, record_key
from environment.simulate import EPISODES, WORLD, simulate
from loopback.fixtures import openai_stub  # noqa: F401 - fixture
from tests.test_environment_cli import SA_SIMULATE, sa_simulate, stub_overrides
from tests.test_environment_episodes import make_record, write_lines
from tests.test_environment_fingerprint import config

INTERRUPTED = "sa-simulate: interrupted; re-run the same command to resume"


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr[-2000:])
    assert lines[0].startswith("sa-simulate: error: ") and "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def refused_in_process(run_dir: Path, *overrides: str) -> str:
    """simulate() with `overrides` must refuse in one line and leave `run_dir` exactly as it was."""
    before = {p: p.read_bytes() if p.is_file() else None for p in run_dir.rglob("*")}
    with pytest.raises(UserError) as refused:
        asyncio.run(simulate(config(*overrides), run_dir))
    assert {p: p.read_bytes() if p.is_file() else None for p in run_dir.rglob("*")} == before
    assert "\n" not in str(refused.value)
    return str(refused.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("agent.max_reasks=-1",), "agent.max_reasks=-1 must be an integer >= 0"),
        (("observer.max_reasks=-2",), "observer.max_reasks=-2 must be an integer >= 0"),
        (("memory.priors_per_agent=-1",), "memory.priors_per_agent=-1 must be an integer >= 0"),
        (("memory.threshold=2",), "memory.threshold=2 must be a number in [-1, 1]"),
        (("agent.sampling.max_tokens=0",), "agent.sampling.max_tokens=0 must be an integer >= 1"),
        (("backend.sampling.temperature=-1",), "backend.sampling.temperature=-1"),
        (("world.size=60", "run.memory_limit_gb=0.01"), "world.size=60 needs about"),
    ],
)
def test_a_bad_count_is_named_before_any_file_is_written(tmp_path: Path, overrides: tuple, message: str) -> None:
    """(A wrong type fails earlier, in Hydra: tests/test_conf_schema_world.py.)"""
    write_lines(tmp_path / EPISODES, [make_record(0, a, world="sandbox-seed0") for a in range(2)])
    assert message in refused_in_process(tmp_path, *overrides)


def test_hostile_run_folder_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / EPISODES).mkdir()
    assert f"{tmp_path / EPISODES} is not a file" in refused_in_process(tmp_path)
    (tmp_path / EPISODES).rmdir()
    for content, message in [(b"[1, 2]", "not a world settings object"), (b'{"size": 3', "unreadable world settings"),
                             (b'{"size": "\xff"}', "unreadable world settings ('utf-8' codec")]:  # fmt: skip
        (tmp_path / WORLD).write_bytes(content)
        assert f"{tmp_path / WORLD}: {message}" in refused_in_process(tmp_path)
    (tmp_path / WORLD).unlink()
    lines = [(json.dumps(make_record(0, a, world="sandbox-seed0")) + "\n").encode() for a in range(3)]
    lines[1] = lines[1].replace(b"revision 0 1", b"revision \xff 0 1")
    (tmp_path / EPISODES).write_bytes(b"".join(lines))
    assert f"{tmp_path / EPISODES}:2: corrupt episode record ('utf-8' codec" in refused_in_process(tmp_path)


def test_read_episodes_names_the_line_with_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / EPISODES
    data = write_lines(path, [make_record(0, a) for a in range(3)])
    path.write_bytes(data.replace(b"revision 0 2", b"revision \xc3\x28 0 2"))
    with pytest.raises(EpisodeFormatError, match=rf"{EPISODES}:3: not a valid episode record \('utf-8' codec"):
        list(read_episodes(path))


def test_a_world_too_big_for_the_machine_is_refused_at_once_in_a_run_dir_named_by_the_model(tmp_path: Path) -> None:
    started = time.monotonic()
    result = sa_simulate("world.size=100000", "backend.model=meta-llama/Llama-3.1-8B-Instruct", cwd=tmp_path)
    one_line_error(result, "world.size=100000 needs about", "GB", "available on this machine")
    assert time.monotonic() - started < 30  # was: a minute of allocation, then MemoryError at ~6 GB
    runs = tmp_path / "outputs" / "sandbox"  # the default run dir names the model; nothing is written into it
    assert [p.name for p in runs.iterdir()] == ["sandbox-seed0-Llama-3.1-8B-Instruct"]
    assert not any((runs / "sandbox-seed0-Llama-3.1-8B-Instruct").iterdir())


def test_a_read_only_run_folder_is_one_line(tmp_path: Path) -> None:
    """Checked before any work; as root (who writes anyway) the command runs as `nobody` through setpriv."""
    as_nobody = os.geteuid() == 0
    assert not as_nobody or shutil.which("setpriv"), "as root this test needs setpriv (util-linux) to drop to nobody"
    base = Path(tempfile.mkdtemp(prefix="sa-readonly-")) if as_nobody else tmp_path
    run_dir = base / "run"
    try:
        os.chmod(base, 0o755)
        run_dir.mkdir()
        data = write_lines(run_dir / EPISODES, [make_record(0, a, world="sandbox-seed0") for a in range(2)])
        os.chmod(run_dir / EPISODES, 0o666)  # the file is writable: the folder is what refuses
        os.chmod(run_dir, 0o555)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
        result = subprocess.run([*nobody, SA_SIMULATE, f"hydra.run.dir={run_dir}"], cwd=base, capture_output=True,
                                text=True, timeout=120)  # fmt: skip
        one_line_error(result, f"{run_dir} is not writable")
        assert sorted(p.name for p in run_dir.iterdir()) == [EPISODES] and (run_dir / EPISODES).read_bytes() == data
    finally:
        if run_dir.exists():
            os.chmod(run_dir, 0o755)
        if as_nobody:
            shutil.rmtree(base)


def test_a_refused_resume_leaves_the_folders_settings_and_config(tmp_path: Path, openai_stub) -> None:  # noqa: F811
    server = openai_stub(latency=0.0)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": f"Is it fine to lie, case {i}?"}) + "\n" for i in range(6)))
    out = tmp_path / "run"
    args = [*stub_overrides(server), "world.size=2", "world.rounds=1", "run.plots=false", f"questions.source={questions}",
            f"hydra.run.dir={out}"]  # fmt: skip
    made = sa_simulate(*args, cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    kept = {
        name: (out / name).read_bytes() for name in (WORLD, EPISODES, ".hydra/config.yaml", ".hydra/overrides.yaml")
    }
    assert b"model: stub\n" in kept[".hydra/config.yaml"]
    changed = ["backend.model=other-model", "memory.population=all_good", "memory.priors_per_agent=3"]
    one_line_error(sa_simulate(*args, *changed, cwd=tmp_path), f"{out} holds a world made with other settings: "
                   "backend.model 'stub' → 'other-model', memory.population 'all_bad' → 'all_good', "
        "memory.priors_per_agent 50 → 3;")  # fmt: skip
    questions.write_text(questions.read_text().replace("case 5", "case five"))
    one_line_error(sa_simulate(*args, cwd=tmp_path), "questions.sha256")
    assert {name: (out / name).read_bytes() for name in kept} == kept


def comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without their timings, in key order."""
    out = []
    for record in sorted(records, key=record_key):
        usage = {k: v for k, v in record["usage"].items() if k not in ("seconds", "wall_seconds")}
        out.append({**record, "usage": usage})
    return out


def test_ctrl_c_is_one_line_130_and_a_rerun_resumes_to_the_uninterrupted_episodes(tmp_path: Path, openai_stub) -> None:  # noqa: F811
    server = openai_stub(latency=0.05)
    args = [*stub_overrides(server), "world.size=2", "world.rounds=3", "run.plots=false", "run.fsync_every=1"]
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    whole = subprocess.Popen([SA_SIMULATE, *args, f"hydra.run.dir={reference}"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    process = subprocess.Popen([SA_SIMULATE, *args, f"hydra.run.dir={interrupted}"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 90
    while process.poll() is None and time.monotonic() < deadline:
        episodes = interrupted / EPISODES
        if episodes.exists() and episodes.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip().splitlines() == [INTERRUPTED], stderr[-2000:]
    done = list(read_episodes(interrupted / EPISODES))
    assert 2 <= len(done) < 12, len(done)  # interrupted mid-run
    assert not (interrupted / "metrics.json").exists()
    resumed = sa_simulate(*args, f"hydra.run.dir={interrupted}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((interrupted / "metrics.json").read_text())["resumed_from"] == len(done)
    assert whole.wait(60) == 0, whole.communicate()[1][-2000:]
    expected = comparable(list(read_episodes(reference / EPISODES)))
    assert len(expected) == 12 and comparable(list(read_episodes(interrupted / EPISODES))) == expected


def test_top_level_usage_is_the_sum_over_backends_when_calls_fail(tmp_path: Path, openai_stub) -> None:  # noqa: F811
    server = openai_stub(latency=0.0, p500=1.0)
    fast = ["limits.max_retries=2", "limits.backoff_base_s=0.01", "limits.backoff_max_s=0.02"]
    out = tmp_path / "run"
    result = sa_simulate(*stub_overrides(server), *[f"backend.{o}" for o in fast], *[f"embedder.{o}" for o in fast],
                         "world.size=2", "world.rounds=1", "run.plots=false", f"hydra.run.dir={out}", cwd=tmp_path)  # fmt: skip
    one_line_error(result, "a turn failed")
    metrics = json.loads((out / "metrics.json").read_text())
    backends = metrics["backends"]
    assert sum(b["failures"] for b in backends) >= 1 and sum(b["retries"] for b in backends) >= 2
    for key in ("calls", "retries"):
        assert metrics[key] == sum(b[key] for b in backends) > 0, (key, metrics[key], backends)
    assert metrics["tokens"] == sum(b["prompt_tokens"] + b["completion_tokens"] for b in backends)
