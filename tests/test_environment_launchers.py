"""Many worlds from one `sa-simulate -m` on Hydra's Ray and submitit launchers (the `scale` extra), for real: a Ray head
started here (`ray start --head`, 2 CPUs, token authentication as on a cluster), the loopback OpenAI stub for every role,
and the shipped conf/hydra/launcher/*.yaml. Each launcher must write the episodes the basic launcher writes for the
same seeds, and re-submitting a sweep must resume every world without a single chat request.

Which fields are deterministic: with turns one at a time (`run.max_inflight=1`) a record is a function of the seed and
the stub's replies, except `usage.seconds` and `usage.wall_seconds` (timings). With concurrent turns, a peer's memory
lookup may or may not see the peer's own latest revision (no barrier between agents), so `memory_hits`, the prompts
and, through the stub's prompt digests, ratings and texts may differ between any two runs, whatever the launcher.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from environment.records import read_episodes, record_key
from loopback.servers import RunningServer, free_port, start_openai_stub, stop_process

SA_SIMULATE = str(Path(sys.executable).with_name("sa-simulate"))
RAY = str(Path(sys.executable).with_name("ray"))
CONF = Path(__file__).resolve().parents[1] / "conf"
TIMINGS = ("seconds", "wall_seconds")  # the only record fields that differ between runs of the same turns
SEEDS = (0, 1)


def require_scale_extra() -> None:
    """Fail (not skip) in one line when the launchers are not installed."""
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
        import ray  # noqa: F401
        import submitit  # noqa: F401
    except ImportError as error:
        pytest.fail(f"{error}: install the launchers with `pip install -e .[scale]`", pytrace=False)


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    require_scale_extra()
    server = start_openai_stub(tmp_path_factory.mktemp("stub"), latency=0.0, log=False)
    yield server
    server.stop()


def sweep_args(server: RunningServer) -> list[str]:
    """A 2x2 world of 2 rounds per seed, every role and the embedder on the stub, turns one at a time."""
    url = server.base_url
    return [
        "-m", "backend=openai", f"backend.base_url={url}", "backend.model=stub", "embedder=openai",
        f"embedder.base_url={url}", "embedder.model=stub-embed", "embedder.dim=384", "world.size=2", "world.rounds=2",
        "run.max_inflight=1", "run.plots=false", "run.progress=false", f"world.seed={','.join(map(str, SEEDS))}",
    ]  # fmt: skip


def sa_simulate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([SA_SIMULATE, *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def world_dirs(cwd: Path) -> dict[int, Path]:
    """The default sweep dir's world folders under the submitting folder, by seed."""
    found = {int(p.name.split("-seed")[1].split("-")[0]): p for p in (cwd / "multirun" / "sandbox").glob("*-seed*")}
    assert sorted(found) == list(SEEDS), sorted(found)
    return found


def episodes(cwd: Path) -> dict[tuple[str, int, int], dict[str, Any]]:
    """Every world's records by record_key, timings dropped; exactly one per (world, round, agent)."""
    records: dict[tuple[str, int, int], dict[str, Any]] = {}
    for folder in world_dirs(cwd).values():
        for record in read_episodes(folder / "episodes.jsonl"):
            assert record_key(record) not in records
            record["usage"] = {k: v for k, v in record["usage"].items() if k not in TIMINGS}
            records[record_key(record)] = record
    assert len(records) == len(SEEDS) * 4 * 2
    return records


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A 2-CPU Ray head (`ray start --head --block`, stopped by its pid) in a folder of its own; yields its address
    and the environment a driver needs to join it (token authentication, as `ray start` sets up on a cluster)."""
    require_scale_extra()
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}
    temp = tempfile.mkdtemp(prefix="sa-ray-")  # short: Ray's socket paths must fit in 107 characters
    folder, port = tmp_path_factory.mktemp("ray-head"), free_port()
    log = (folder / "head.log").open("w")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
    )  # fmt: skip
    try:
        wait_for_line(folder / "head.log", "Ray runtime started", head, timeout_s=90)
        yield f"127.0.0.1:{port}", env
    finally:
        stop_process(head, grace_s=20)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def wait_for_line(path: Path, text: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text():
        assert process.poll() is None, f"ray start exited: {path.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout_s} s: {path.read_text()[-2000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def basic(stub: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int, int], dict[str, Any]]:
    """The reference: the same sweep on Hydra's basic launcher (one world after the other, in this process)."""
    cwd = tmp_path_factory.mktemp("basic")
    sa_simulate(*sweep_args(stub), cwd=cwd)
    return episodes(cwd)


def test_every_launcher_config_composes() -> None:
    """The shipped launcher configs compose onto sa-simulate's config with their tuned values."""
    from hydra import compose, initialize_config_dir

    require_scale_extra()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        launchers = {name: compose("simulate", [f"hydra/launcher={name}"], return_hydra_config=True).hydra.launcher
                     for name in ("ray_local", "ray_cluster", "slurm")}  # fmt: skip
    assert (
        launchers["ray_local"]._target_.endswith("RayLauncher") and launchers["ray_local"].ray.init.address == "local"
    )
    assert launchers["ray_cluster"].ray.init.address == "auto" and launchers["ray_cluster"].ray.remote.num_cpus == 1
    slurm = launchers["slurm"]
    assert slurm._target_.endswith("SlurmLauncher") and slurm.max_num_timeout > 0 and slurm.timeout_min == 240
    assert (slurm.cpus_per_task, slurm.mem_gb, slurm.array_parallelism) == (4, 16, 32)


@pytest.mark.slow
def test_ray_cluster_sweep_writes_the_basic_launchers_episodes_and_resumes_on_ray_local(
    stub: RunningServer, ray_head: tuple[str, dict[str, str]], basic: dict, tmp_path: Path
) -> None:
    """Two worlds as Ray tasks on the head started here, into the default sweep dir of the submitting folder (Ray's
    workers run in the head's folder); then the same command on hydra/launcher=ray_local (a Ray of its own) resumes
    both worlds: no generation or rating request reaches the stub (only the embeddings that rebuild memory),
    episodes.jsonl unchanged byte for byte."""
    address, env = ray_head
    cwd = tmp_path / "submit"
    done = sa_simulate(*sweep_args(stub), "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}",
                       cwd=cwd, env=env)  # fmt: skip
    assert "Ray Launcher is launching 2 jobs" in done.stdout + done.stderr
    assert episodes(cwd) == basic
    before = {seed: (folder / "episodes.jsonl").read_bytes() for seed, folder in world_dirs(cwd).items()}
    chats = stub.stats()["by_path"]["/v1/chat/completions"]
    sa_simulate(*sweep_args(stub), "hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2", cwd=cwd)
    assert stub.stats()["by_path"]["/v1/chat/completions"] == chats
    for seed, folder in world_dirs(cwd).items():
        assert (folder / "episodes.jsonl").read_bytes() == before[seed]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["interactions_this_run"] == 0 and metrics["resumed_from"] == 8 and metrics["records"] == 8


@pytest.mark.slow
def test_submitit_local_sweep_writes_the_basic_launchers_episodes(
    stub: RunningServer, basic: dict, tmp_path: Path
) -> None:
    """The same sweep as submitit jobs (local processes, as SLURM would run them: one job per world)."""
    cwd = tmp_path / "submit"
    sa_simulate(*sweep_args(stub), "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", cwd=cwd)
    assert episodes(cwd) == basic
    results = list((cwd / "multirun" / "sandbox" / ".submitit").glob("*/*_result.pkl"))  # one per job
    assert len(results) == len(SEEDS)
