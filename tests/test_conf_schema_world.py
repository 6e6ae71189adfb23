"""sa-simulate's typed configs (conf/schema/world.py): in every group it composes (backend, embedder, memory, rater,
stopping, world) and at its top level, a wrong type or an unknown key fails in one line naming the key, exit 2, both
as a command-line override and in a user's YAML file (`--config-dir`); the schemas' defaults are the shipped YAMLs'
values, and a backend node given as a plain mapping is typed and checked the same way."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conf import CONFIG_DIR
from conf.errors import UserError
from conf.schema import world as schema
from environment.simulate import main

# (group, option): a key of the wrong type, with its bad value. One per group file (and the app's own keys).
WRONG_TYPE = {
    ("backend", "hf_local"): ("max_batch_size", "many"),
    ("backend", "openai"): ("limits.rpm", "fast"),
    ("backend", "langchain"): ("pass_sampling", "maybe"),
    ("embedder", "hf_local"): ("batch_size", "big"),
    ("embedder", "openai"): ("dim", "wide"),
    ("memory", "default"): ("top_k", "two"),
    ("rater", "generate"): ("top_k", "many"),
    ("stopping", "default"): ("plateau.window", "long"),
    ("world", "default"): ("size", "abc"),
}
TOP_LEVEL = [("agent.max_reasks", "abc"), ("observer.max_reasks", "x"), ("run.fsync_every", "often"),
             ("questions.limit", "few"), ("world.k", "many")]  # fmt: skip


def sa_simulate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, *args: str) -> str:
    """Run sa-simulate in this process; it must fail with exit 2 in one line, which is returned. A config that
    passed would be refused by the memory cap (another line), never run."""
    argv = ["sa-simulate", *args, f"hydra.run.dir={tmp_path / 'run'}", "run.memory_limit_gb=0.000001"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("sa-simulate: error: ") and "needs about" not in lines[0], lines[0]
    return lines[0]


def user_file(tmp_path: Path, group: str, content: dict) -> str:
    """A group file of the user's own (no defaults list) in a `--config-dir`; returns its option name."""
    (tmp_path / "conf" / group).mkdir(parents=True, exist_ok=True)
    (tmp_path / "conf" / group / "mine.yaml").write_text(yaml.safe_dump(content))
    return "mine"


def nested(key: str, value: object) -> dict:
    """`a.b=v` as {a: {b: v}}."""
    head, _, rest = key.partition(".")
    return {head: nested(rest, value) if rest else value}


def shipped(group: str, option: str) -> dict:
    """A shipped group file's values (its defaults list left out)."""
    data = yaml.safe_load((CONFIG_DIR / group / f"{option}.yaml").read_text())
    data.pop("defaults", None)
    return data


@pytest.mark.parametrize(("group", "option"), list(WRONG_TYPE), ids=[f"{g}-{o}" for g, o in WRONG_TYPE])
def test_a_wrong_type_or_unknown_key_on_the_command_line_is_one_line(
    group: str, option: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    key, value = WRONG_TYPE[group, option]
    select = f"{group}={option}"
    line = sa_simulate(monkeypatch, capsys, tmp_path, select, f"{group}.{key}={value}")
    assert f"{group}.{key}" in line and value in line
    assert f"{group}.bogus" in sa_simulate(monkeypatch, capsys, tmp_path, select, f"+{group}.bogus=1")


@pytest.mark.parametrize(("group", "option"), list(WRONG_TYPE), ids=[f"{g}-{o}" for g, o in WRONG_TYPE])
def test_a_wrong_type_or_unknown_key_in_a_users_group_file_is_one_line(
    group: str, option: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """The user's file lists no schema: sa-simulate's top-level schema types it all the same."""
    key, value = WRONG_TYPE[group, option]
    base = shipped(group, option)
    for content, fragment in (({**base, **nested(key, value)}, f"{group}.{key}"), ({**base, "bogus": 1}, "bogus")):
        mine = user_file(tmp_path, group, content)
        line = sa_simulate(monkeypatch, capsys, tmp_path, "--config-dir", str(tmp_path / "conf"), f"{group}={mine}")
        assert fragment in line, line


@pytest.mark.parametrize(("key", "value"), TOP_LEVEL)
def test_a_wrong_type_at_the_top_level_is_one_line(
    key: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    line = sa_simulate(monkeypatch, capsys, tmp_path, f"{key}={value}")
    assert key in line and value in line


def test_an_unknown_key_or_wrong_type_in_a_users_top_level_file_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    for extra, fragment in (({"bogus": 1}, "bogus"), ({"run": {"plots": "sometimes"}}, "run.plots"),
                            ({"agent": {"sampling": {"top_k": 5}}}, "agent.sampling.top_k")):  # fmt: skip
        (folder / "mine.yaml").write_text(yaml.safe_dump({"defaults": ["simulate", "_self_"], **extra}))
        line = sa_simulate(monkeypatch, capsys, tmp_path, "--config-dir", str(folder), "--config-name", "mine")
        assert fragment in line, line
    for override, fragment in (("+bogus=1", "bogus"), ("+agent.sampling.top_k=5", "agent.sampling.top_k")):
        assert fragment in sa_simulate(monkeypatch, capsys, tmp_path, override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("world.size=0", "world.size=0 must be an integer >= 1"),
        ("world.global_fraction=1.5", "world.global_fraction=1.5 must be a number in [0, 1]"),
        ("memory.threshold=2", "memory.threshold=2 must be a number in [-1, 1]"),
        ("stopping.budget.max_cost=-1", "stopping.budget.max_cost=-1 must be a number >= 0"),
        ("backend.limits.rpm=-5", "backend.limits.rpm=-5 must be a positive number (or null for no limit)"),
        ("rater.top_k=50", "rater.top_k=50 must be in 1..20"),
        ("observer.rater_mode=vibes", "rater.mode='vibes' must be one of"),
        ("run.progress_log_every_s=0", "run.progress_log_every_s=0 must be a number >= 1"),
    ],
)
def test_a_value_out_of_range_is_one_line_naming_the_key(
    override: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    assert message in sa_simulate(monkeypatch, capsys, tmp_path, override)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"name": "openai", "model": "m", "colour": "red"}, "unknown observer.backend key(s) ['colour']"),
        ({"name": "openai", "model": "m", "limits": {"rpm": "fast"}}, "observer.backend.limits.rpm: Value 'fast'"),
        ({"name": "vllm"}, "observer.backend.name='vllm' is not one of hf_local, openai, langchain"),
        ({"name": "openai"}, "observer.backend.model is not set"),
        (
            {"name": "openai", "model": "m", "budget": {"max_calls": 3}},
            "observer.backend.budget was removed; use sa-simulate's stopping.budget",
        ),
    ],
)
def test_a_backend_given_as_a_mapping_is_typed_and_checked_naming_its_place(node: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        schema.backend_node(node, "observer.backend")
    assert schema.backend_node({"name": "openai", "model": "m"}).limits.max_retries == 0  # defaults: layers off
    assert schema.backend_node({"name": "hf_local", "budget": {"max_calls": None}}).model == "embedded:smollm2"


@pytest.mark.parametrize(
    ("group", "option", "schema_class"),
    [("world", "default", schema.World), ("memory", "default", schema.Memory), ("rater", "generate", schema.Rater),
     ("stopping", "default", schema.Stopping), ("backend", "hf_local", schema.HFLocalBackend),
     ("embedder", "hf_local", schema.HFLocalEmbedder)],
)  # fmt: skip
def test_the_schema_defaults_are_the_shipped_yaml_values(group: str, option: str, schema_class: type) -> None:
    """A node built in code (a partial backend mapping, a test's World) means what the shipped YAML says."""
    assert OmegaConf.to_container(OmegaConf.structured(schema_class)) == shipped(group, option)
