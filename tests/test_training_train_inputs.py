"""sa-train's bad input is one line naming what is wrong (exit 2, no traceback), found before any work: fields of the
wrong type in the data file (file, line, field), values that are not numbers (the key), a missing model folder and an
output folder that cannot be written."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from conf import CONFIG_DIR
from conf.errors import EXIT_USER_ERROR, UserError
from tests.conftest import build_fixture_data
from training.dataset import load_groups
from training.train import main, validate


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = build_fixture_data(tmp_path_factory.mktemp("inputs-data"))
    return out


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides))


def rows(data_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines()[:3]]


def set_response(index: int, value) -> callable:
    return lambda row: row["responses"].__setitem__(index, value)


WRONG_TYPES = [  # (change to the second group, what the error says after "file:2: ")
    (
        lambda row: row.update(responses="x"),
        r"field 'responses' must be a list of \{text, rating\} objects, found \"x\"",
    ),
    (lambda row: row.update(responses={"text": "a"}), r"field 'responses' must be a list .*found \{\"text\": \"a\"\}"),
    (
        lambda row: row.update(messages=None),
        r"field 'messages' must be a non-empty list of \{role, content\} strings, "
        r"found null",
    ),  # fmt: skip
    (lambda row: row.update(messages="not json"), r"field 'messages' must be .*found \"not json\""),
    (lambda row: row.update(messages=[{"role": "user", "content": None}]), r"field 'messages' must be"),
    (lambda row: row.pop("messages"), r"field 'messages' is missing"),
    (lambda row: row.update(stage="first"), r"field 'stage' must be an integer, found \"first\""),
    (set_response(0, "x"), r"field 'responses\[0\]' must be a \{text, rating\} object, found \"x\""),
    (lambda row: row["responses"][0].update(text=5), r"field 'responses\[0\]\.text' must be a string, found 5"),
    (lambda row: row["responses"][0].update(rating="7"), r"response rating '7' is not a number"),
]


@pytest.mark.parametrize("case", range(len(WRONG_TYPES)))
def test_a_field_of_the_wrong_type_names_the_file_line_and_field(case, tmp_path, data_dir):
    change, message = WRONG_TYPES[case]
    groups = rows(data_dir)
    change(groups[1])
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(g) + "\n" for g in groups))
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}:2: {message}") as error:
        load_groups(path)
    assert "\n" not in str(error.value)


def test_every_group_wrong_a_cut_off_line_and_parquet(tmp_path, data_dir):
    from datasets import Dataset

    groups = rows(data_dir)
    every = tmp_path / "every.jsonl"  # the same wrong type in every group: datasets would load it
    every.write_text("".join(json.dumps({**g, "responses": "x"}) + "\n" for g in groups))
    with pytest.raises(UserError, match=rf"^{re.escape(str(every))}:1: field 'responses' must be a list"):
        load_groups(every)
    cut = tmp_path / "cut.jsonl"
    cut.write_text(json.dumps(groups[0]) + "\n\n" + json.dumps(groups[1])[:50])
    with pytest.raises(UserError, match=rf"^{re.escape(str(cut))}:3: not valid JSON \(a cut-off line\?\)"):
        load_groups(cut)
    listed = tmp_path / "list.jsonl"
    listed.write_text(json.dumps(groups) + "\n")
    with pytest.raises(UserError, match=r":1: a group must be a JSON object, found \[\{"):
        load_groups(listed)
    groups[2]["messages"] = None
    parquet = tmp_path / "train.parquet"
    Dataset.from_list(groups).to_parquet(str(parquet))
    with pytest.raises(UserError, match=rf"^{re.escape(str(parquet))}:3: field 'messages' must be .*found null"):
        load_groups(tmp_path)  # the folder: its train.parquet
    assert len(load_groups(data_dir)) == 11  # the builder's own output passes


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=0", "train.lr=0 must be a number > 0"),
        ("train.log_every=0", "train.log_every=0 must be an integer >= 1"),
        ("train.save_every=-1", "train.save_every=-1 must be an integer >= 0"),
        ("loss.lam=-1", "loss.lam=-1 is out of range for loss=stable_alignment"),
        ("model.name=/nonexistent", "model.name=/nonexistent: no such folder; pass a Hugging Face model folder"),
    ],
)
def test_a_bad_value_is_a_one_line_error_naming_the_key(override, message, tmp_path, data_dir):
    with pytest.raises(UserError) as error:
        validate(compose(f"data={data_dir}", override, f"output_dir={tmp_path / 'out'}"))
    assert str(error.value).startswith(message), str(error.value)
    assert not (tmp_path / "out").exists()


def test_a_model_folder_without_config_is_named(tmp_path, data_dir):
    with pytest.raises(UserError, match=r"is not a model folder \(no config\.json\)"):
        validate(compose(f"data={data_dir}", f"model.name={tmp_path}", f"output_dir={tmp_path / 'out'}"))


def sa_train(monkeypatch, capsys, *args: str) -> str:
    """`sa-train ARGS` in this process; its one stderr line (exit code 2 asserted)."""
    monkeypatch.setattr(sys, "argv", ["sa-train", *args])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == EXIT_USER_ERROR
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    return lines[0]


def test_the_command_fails_in_one_line_before_any_work(tmp_path, data_dir, monkeypatch, capsys):
    run_dir = f"hydra.run.dir={tmp_path / 'run'}"
    line = sa_train(monkeypatch, capsys, f"data={data_dir}", "train.lr=0", run_dir)
    assert line == "sa-train: error: train.lr=0 must be a number > 0"
    for override in ("train.lr=abc", "train.group_size=abc", "train.max_steps=abc", "train.save_every=1.5",
                     "loss.lam=abc"):  # a wrong type: the schema, while Hydra composes  # fmt: skip
        line = sa_train(monkeypatch, capsys, f"data={data_dir}", override, run_dir)
        assert f"full_key: {override.split('=')[0]}" in line and "could not be converted" in line, line
    line = sa_train(monkeypatch, capsys, f"data={data_dir}", "model.name=/nonexistent", run_dir)
    assert line.startswith("sa-train: error: model.name=/nonexistent: no such folder")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # an output folder that cannot be created (a file where a folder belongs)
    line = sa_train(monkeypatch, capsys, f"data={data_dir}", f"output_dir={blocker / 'out'}", run_dir)
    assert line == (f"sa-train: error: output_dir={blocker / 'out'} cannot be created: {blocker} is not a folder; "
                    "choose a writable folder (output_dir=...)")  # fmt: skip
    # a run folder Hydra cannot create, before sa-train's own code runs
    line = sa_train(monkeypatch, capsys, f"data={data_dir}", f"hydra.run.dir={blocker / 'run'}")
    assert line.startswith(f"sa-train: error: {blocker / 'run'}: ") and "hydra.run.dir=" in line
    assert not list((tmp_path / "run").glob("checkpoints"))


def test_a_read_only_output_folder_is_refused_before_any_work(data_dir):
    """A real sa-train as a user the folder refuses (as root, whom chmod does not stop, it runs as `nobody` through
    setpriv): one line naming the folder, exit 2, nothing written."""
    import shutil
    import subprocess
    import tempfile

    as_nobody = os.geteuid() == 0
    assert not as_nobody or shutil.which("setpriv"), "as root this test needs setpriv (util-linux) to drop to nobody"
    base = Path(tempfile.mkdtemp(prefix="sa-train-readonly-"))
    try:
        shutil.copytree(data_dir, base / "data")
        locked = base / "locked"
        locked.mkdir()
        for path in [base, *base.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o644)
        locked.chmod(0o555)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
        for out in (locked, locked / "new"):
            done = subprocess.run(
                [*nobody, str(Path(sys.executable).with_name("sa-train")), f"data={base / 'data'}", f"output_dir={out}",
                 f"hydra.run.dir={base / 'run'}"],
                cwd=base, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            lines = done.stderr.strip().splitlines()
            assert done.returncode == EXIT_USER_ERROR and len(lines) == 1, done.stderr[-2000:]
            assert re.match(rf"sa-train: error: output_dir={re.escape(str(out))} (is not writable|cannot be created)",
                            lines[0]), lines[0]  # fmt: skip
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
