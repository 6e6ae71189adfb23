"""The training side's typed configs (conf/schema/training.py): in every group it owns (loss, experiment, eval_preset)
and at the top level of sa-train, sa-build-data, sa-eval and sa-experiment, a wrong type or an unknown key fails in
one line naming the key, exit 2, both as a command-line override and in a user's YAML file (`--config-dir`). The
loss registry is the one list of losses: each conf/loss/*.yaml is a registered loss whose dataclass defaults are the
file's values, and training.losses computes every registered loss."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conf import CONFIG_DIR
from conf.errors import UserError
from conf.schema import training as schema

APPS = {  # app → (module, prog, arguments that get it past its required keys)
    "train": ("training.train", "sa-train", ["data=unused"]),
    "build_data": ("training.build_data", "sa-build-data", ["inputs=[unused]"]),
    "eval": ("training.evaluate", "sa-eval", ["tasks=[hhh]", "models=[embedded:smollm2]"]),
    "experiment": ("experiment.run", "sa-experiment", []),
}
# (app, key, a value of the wrong type) for the app's own keys
TOP_LEVEL = [
    ("train", "train.lr", "fast"), ("train", "model.lora.r", "wide"), ("train", "train.share_prompt", "often"),
    ("build_data", "seed", "abc"), ("build_data", "realignment.min_score", "high"),
    ("eval", "limit", "few"), ("eval", "scoring.max_batch", "many"), ("eval", "judge.max_reasks", "abc"),
    ("experiment", "alpha", "small"), ("experiment", "resamples", "lots"),
]  # fmt: skip
# (app, group, option, key, a value of the wrong type) for each group file
GROUPS = [
    ("train", "loss", "stable_alignment", "margin", "wide"), ("train", "loss", "sft", "name", [1]),
    ("train", "loss", "dpo", "beta", "big"), ("train", "loss", "simpo", "gamma", "x"),
    ("experiment", "experiment", "cpu_small", "worlds", "many"), ("experiment", "experiment", "gpu", "train_seeds", "x"),
]  # fmt: skip


def run_app(app: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp: Path, *args: str,
            flags: tuple[str, ...] = ()) -> str:  # fmt: skip
    """Run the app in this process with `flags` (--config-dir ...) and override `args`; it must fail with exit 2 in
    one line, which is returned."""
    module, prog, required = APPS[app]
    main = importlib.import_module(module).main
    monkeypatch.setattr(sys, "argv", [prog, *flags, *required, *args, f"hydra.run.dir={tmp / 'run'}"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, captured.err
    assert lines[0].startswith(f"{prog}: error: ") and "Traceback" not in captured.out, lines[0]
    return lines[0]


def shipped(group: str, option: str) -> dict:
    """A shipped group file's values (its defaults list left out)."""
    data = yaml.safe_load((CONFIG_DIR / group / f"{option}.yaml").read_text())
    data.pop("defaults", None)
    return data


def user_file(tmp: Path, relative: str, content: dict, header: str = "") -> Path:
    """A YAML file of the user's own under tmp/conf (a `--config-dir`); returns that folder."""
    path = tmp / "conf" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(content))
    return tmp / "conf"


def nested(key: str, value: object) -> dict:
    """`a.b=v` as {a: {b: v}}."""
    head, _, rest = key.partition(".")
    return {head: nested(rest, value) if rest else value}


@pytest.mark.parametrize(("app", "key", "value"), TOP_LEVEL)
def test_a_wrong_type_or_unknown_key_of_an_app_on_the_command_line_is_one_line(app, key, value, monkeypatch, capsys,
                                                                              tmp_path):  # fmt: skip
    line = run_app(app, monkeypatch, capsys, tmp_path, f"{key}={value}")
    assert f"full_key: {key}" in line and value in line, line
    parent = key.rpartition(".")[0]
    bogus = f"{parent}.bogus" if parent else "bogus"
    assert f"{bogus} is not a key" in run_app(app, monkeypatch, capsys, tmp_path, f"+{bogus}=1")


@pytest.mark.parametrize("app", list(APPS))
def test_a_wrong_type_or_unknown_key_in_a_users_top_level_file_is_one_line(app, monkeypatch, capsys, tmp_path):
    key, value = next((k, v) for a, k, v in TOP_LEVEL if a == app)
    for extra, fragment in ((nested(key, value), key), ({"bogus": 1}, "bogus")):
        folder = user_file(tmp_path, "mine.yaml", {"defaults": [app, "_self_"], **extra})
        line = run_app(app, monkeypatch, capsys, tmp_path, flags=("--config-dir", str(folder), "--config-name", "mine"))
        assert fragment in line, line


@pytest.mark.parametrize(("app", "group", "option", "key", "value"), GROUPS)
def test_a_wrong_type_or_unknown_key_in_a_group_on_the_command_line_is_one_line(app, group, option, key, value,
                                                                               monkeypatch, capsys, tmp_path):  # fmt: skip
    override = f"{group}.{key}={value}".replace("'", "")
    line = run_app(app, monkeypatch, capsys, tmp_path, f"{group}={option}", override)
    assert f"{group}.{key}" in line, line
    line = run_app(app, monkeypatch, capsys, tmp_path, f"{group}={option}", f"+{group}.bogus=1")
    assert f"{group}.bogus is not a key" in line, line


@pytest.mark.parametrize(("app", "group", "option", "key", "value"), GROUPS)
def test_a_wrong_type_or_unknown_key_in_a_users_group_file_is_one_line(app, group, option, key, value, monkeypatch,
                                                                      capsys, tmp_path):  # fmt: skip
    """The user's file lists no schema: the app's schema types it (a loss by its `name`) all the same."""
    base = shipped(group, option)
    for content, fragment in (({**base, key: value}, f"{group}.{key}"), ({**base, "bogus": 1}, "bogus")):
        folder = user_file(tmp_path, f"{group}/mine.yaml", content)
        line = run_app(app, monkeypatch, capsys, tmp_path, f"{group}=mine", flags=("--config-dir", str(folder)))
        assert fragment in line, line


def test_an_eval_preset_of_the_users_is_typed_by_sa_evals_schema(monkeypatch, capsys, tmp_path):
    """eval_preset files set top-level keys (`# @package _global_`): sa-eval's schema checks them."""
    for content, fragment in (({"limit": "few"}, "full_key: limit"), ({"bogus": 1}, "bogus")):
        folder = user_file(tmp_path, "eval_preset/mine.yaml", content, header="# @package _global_\n")
        line = run_app("eval", monkeypatch, capsys, tmp_path, "eval_preset=mine", flags=("--config-dir", str(folder)))
        assert fragment in line, line
    assert "full_key: tasks" in run_app("eval", monkeypatch, capsys, tmp_path, "eval_preset=demo", "tasks=1")


def test_the_typo_of_the_issue_names_the_key(monkeypatch, capsys, tmp_path):
    line = run_app("train", monkeypatch, capsys, tmp_path, "loss=dpo", "loss.bta=0.1")
    assert "Key 'bta' not in 'DpoLoss'; full_key: loss.bta" in line, line


def test_every_loss_yaml_is_a_registered_loss_with_the_same_defaults_and_a_function():
    from training.losses import LOSSES

    files = {path.stem for path in (CONFIG_DIR / "loss").glob("*.yaml")}
    assert files == set(schema.LOSSES) == set(LOSSES)
    for name, cls in schema.LOSSES.items():
        assert OmegaConf.to_container(OmegaConf.structured(cls)) == shipped("loss", name)
        assert LOSSES[name].select == cls.select and LOSSES[name].needs_reference == cls.needs_reference
    assert [name for name, cls in schema.LOSSES.items() if cls.needs_reference] == ["dpo"]


def test_a_loss_given_as_a_mapping_is_typed_and_checked_by_its_name():
    assert schema.typed_loss({"name": "dpo", "beta": 0.5}) == schema.DpoLoss(beta=0.5)
    for node, message in [
        ({"name": "dpo", "bta": 0.1}, "loss.bta: Key 'bta' not in 'DpoLoss' (loss=dpo"),
        ({"name": "simpo", "gamma": "x"}, "loss.gamma: Value 'x' of type 'str' could not be converted to Float"),
        ({"name": "stable_alignment", "lam": -1}, "loss.lam=-1 is out of range for loss=stable_alignment"),
        ({"name": "ppo"}, "loss.name='ppo' is unknown; use one of stable_alignment, sft, dpo, simpo"),
    ]:
        with pytest.raises(UserError) as caught:
            schema.typed_loss(node)
        assert str(caught.value).startswith(message), str(caught.value)


def test_every_app_yaml_names_its_schema_and_every_schema_field_is_in_the_yaml():
    """The YAML stays the documented default of every key: no schema field is left for a default of its own."""
    for app, cls in schema.APPS.items():
        text = yaml.safe_load((CONFIG_DIR / f"{app}.yaml").read_text())
        assert f"/schema/{app}@_here_" in text["defaults"]
        groups = {next(iter(d)) for d in text["defaults"] if isinstance(d, dict)}
        fields = set(OmegaConf.structured(cls).keys())
        assert fields - set(text) <= groups | {"backend", "answerer", "rater"}, app
