"""The four console scripts are Hydra apps: `--cfg job` prints the config, overrides apply, and bad input fails in one
line with exit code 2 (no traceback, nothing written)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
COMMANDS = ["sa-simulate", "sa-build-data", "sa-train", "sa-eval"]


def run(command: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess, command: str, *fragments: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_cfg_job_prints_the_config(command: str) -> None:
    result = run(command, "--cfg", "job")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict) and config, result.stdout


def test_simulate_overrides_apply() -> None:
    result = run("sa-simulate", "world.size=2", "world.rounds=1", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    world = yaml.safe_load(result.stdout)["world"]
    assert (world["size"], world["rounds"]) == (2, 1)


def test_train_loss_switch_applies() -> None:
    """One override picks the loss (composed in-process: `sa-train --cfg job` itself is tested above)."""
    from hydra import compose, initialize_config_dir

    from conf import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        for loss in ("sft", "dpo", "simpo", "stable_alignment"):
            assert compose("train", [f"loss={loss}", "data=somewhere"]).loss.name == loss


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_key_is_a_one_line_error(command: str, tmp_path: Path) -> None:
    result = run(command, "no_such_key.inner=3", f"hydra.run.dir={tmp_path / 'out'}")
    assert_one_line_error(result, command, "no_such_key")
    assert not (tmp_path / "out").exists()


def test_conflicting_hydra_flags_are_a_one_line_error() -> None:
    result = run("sa-experiment", "-m", "experiment.worlds=1,2", "--cfg", "job")
    assert_one_line_error(result, "sa-experiment", "Only one of --run, --multirun, --cfg", "without -m")


def readme_commands(program: str) -> list[list[str]]:
    """The `program` lines of the README's bash blocks, as argv lists (comments dropped)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```bash\n")[1:]]
    lines = [line for block in blocks for line in block.splitlines() if line.startswith(program + " ")]
    return [shlex.split(line, comments=True) for line in lines]


def test_the_readme_experiment_commands_compose() -> None:
    """Every `sa-experiment` line of the README composes (`--cfg job`); a sweep line with its first value per key.
    (Unquoted `key=[a=b]` list items are not valid Hydra overrides: this caught them.)"""
    commands = readme_commands("sa-experiment")
    assert len(commands) >= 4 and any("-m" in argv for argv in commands)
    for argv in commands:
        args = [re.sub(r"^([\w.~+]+)=([^\[\"'{]*?),.*$", r"\1=\2", a) if "-m" in argv else a for a in argv[1:]]
        result = run("sa-experiment", *[a for a in args if a != "-m"], "--cfg", "job")
        assert result.returncode == 0, (argv, result.stderr[-1000:])
        assert yaml.safe_load(result.stdout)["experiment"]["name"], argv


def test_simulate_bad_value_is_a_one_line_error(tmp_path: Path) -> None:
    result = run("sa-simulate", "world.size=0", f"hydra.run.dir={tmp_path}")
    assert_one_line_error(result, "sa-simulate", "world.size")
    assert not (tmp_path / "episodes.jsonl").exists()


def test_unknown_config_choice_is_a_one_line_error() -> None:
    assert_one_line_error(run("sa-train", "loss=no_such_loss", "data=x"), "sa-train", "no_such_loss")
    assert_one_line_error(run("sa-simulate", "backend=no_such_backend"), "sa-simulate", "no_such_backend")


def test_missing_inputs_are_one_line_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert_one_line_error(
        run("sa-build-data", f"inputs=[{missing}]", f"hydra.run.dir={tmp_path / 'data'}"), "sa-build-data", "missing"
    )
    assert_one_line_error(
        run("sa-train", f"data={missing}", "model.name=embedded:smollm2", f"hydra.run.dir={tmp_path / 'ckpt'}"),
        "sa-train",
        "missing",
    )


def test_ctrl_c_is_one_line_with_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """SIGINT (KeyboardInterrupt inside the task) ends any sa-* command with one line and the shell's code 130."""
    from conf.cli import hydra_command
    from conf.errors import EXIT_INTERRUPTED

    def task(_cfg: object) -> None:
        raise KeyboardInterrupt

    main = hydra_command("train", "sa-train")(task)
    monkeypatch.setattr(sys, "argv", ["sa-train", f"hydra.run.dir={tmp_path}", "hydra.output_subdir=null"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sa-train: interrupted; re-run the same command to resume"]


@pytest.mark.parametrize("command", ["sa-train", "sa-simulate"])
def test_ctrl_c_during_the_start_up_imports_is_one_line(command: str, tmp_path: Path) -> None:
    """SIGINT 1 s after start lands in the torch/transformers imports (seconds long): still one line, exit 130."""
    import signal
    import time

    process = subprocess.Popen([str(Path(sys.executable).with_name(command)), f"hydra.run.dir={tmp_path / 'run'}"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()  # never leave a command running when the interrupt did not end it
    assert process.returncode == 130, err[-2000:]
    # the last line is ours and there is no traceback (a progress bar may come before it when the machine is fast)
    assert err.strip().splitlines()[-1] == f"{command}: interrupted; re-run the same command to resume"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
