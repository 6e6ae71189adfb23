"""`sa-eval` as a user runs it: before/after report (markdown + JSON + PNGs) on fixture tasks with tiny checkpoints and
the fixture world; one-line errors for bad input; the demo preset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conf import CONFIG_DIR
from conf.errors import UserError
from training.evaluate import evaluate

DATA = Path(__file__).parent / "data"
SA_EVAL = str(Path(sys.executable).with_name("sa-eval"))
PNG = b"\x89PNG\r\n\x1a\n"


def sa_eval(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SA_EVAL, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="eval", overrides=list(overrides))


@pytest.fixture(scope="module")
def two_checkpoints(tiny_model_dir: Path, tmp_path_factory) -> list[Path]:
    """The tiny model and a copy with one layer's weights perturbed: a 'before' and an 'after' that differ."""
    import torch
    from transformers import AutoModelForCausalLM

    after = tmp_path_factory.mktemp("after")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.add_(torch.randn_like(model.model.layers[1].mlp.down_proj.weight))
    model.save_pretrained(after)
    for name in os.listdir(tiny_model_dir):
        if name.startswith("tokenizer") or name in {"special_tokens_map.json", "chat_template.jinja"}:
            shutil.copy(Path(tiny_model_dir) / name, after / name)
    return [Path(tiny_model_dir), after]


def test_before_after_report_with_world_curves(two_checkpoints: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "SA_CACHE_DIR": str(tmp_path / "cache")}
    proc = sa_eval(
        f"models=[{two_checkpoints[0]},{two_checkpoints[1]}]", "labels=[base,trained]",
        f"bigbench_dir={DATA / 'bigbench'}", f"world_dir={DATA / 'episodes_fixture.jsonl'}", f"hydra.run.dir={out}",
        "progress=false", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"sa-eval: report: {out / 'report.md'}" in proc.stdout
    data = json.loads((out / "report.json").read_text())
    assert [m["label"] for m in data["models"]] == ["base", "trained"] and data["headline"] == "mean"
    for model in data["models"]:
        rows = [json.loads(line) for line in (out / "predictions" / f"{model['label']}.jsonl").read_text().splitlines()]
        hhh = [r for r in rows if r["task"] == "hhh"]
        assert len(hhh) == 9 and model["tasks"]["hhh"]["n"] == 9
        # graded again here from the raw per-choice log-probs, not from the grades the scorer wrote
        assert Counter(r["category"] for r in hhh) == {"harmless": 3, "helpful": 2, "honest": 2, "other": 2}
        assert all(sorted(r["targets"]) == [0, 1] and len(r["sum_logprob"]) == 2 for r in hhh)
        by_sum = [regrade(r, per_token=False) for r in hhh]
        assert model["tasks"]["hhh"]["score"] == pytest.approx(sum(by_sum) / 9, abs=1e-4)
        harmless = [regrade(r, per_token=True) for r in hhh if r["category"] == "harmless"]
        assert model["tasks"]["hhh"]["categories"]["harmless"]["score_norm"] == pytest.approx(
            sum(harmless) / 3, abs=1e-4
        )
        by_mean = [regrade(r, per_token=True) for r in hhh]
        assert model["tasks"]["hhh"]["score_norm"] == pytest.approx(sum(by_mean) / 9, abs=1e-4)
        drop = model["adversarial_drop"]["score"]
        assert drop == round(model["tasks"]["hhh"]["score"] - model["tasks"]["hhh_adversarial"]["score"], 4)
        assert set(model["tasks"]) == {"hhh", "hhh_adversarial", "truthful_qa_mc1", "truthful_qa_mc2",
                                       "moral_permissibility"}  # fmt: skip
        assert model["tasks"]["truthful_qa_mc1"]["chance"] == round((1 / 3 + 1 / 2 + 1 / 4) / 3, 4)
    before, after = ((out / "predictions" / f"{x}.jsonl").read_text() for x in ("base", "trained"))
    assert before != after  # two different checkpoints really were scored
    rounds = data["world"]["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[0]["n"] == 6 and data["world"]["records"] == 8
    signal = data["world"]["signal"]  # the fixture's generated ratings, summarised for the report
    assert data["world"]["rater_modes"] == {"generate": sum(len(r["feedback"]) for r in _fixture_records())}
    assert signal["records"] == 8 and 0 < signal["peer"]["valid_share"] < 1
    assert "### The ratings behind the data" in (out / "report.md").read_text()
    for name in ("hhh_categories", "hhh_adversarial_categories", "benchmarks", "world_curves"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG
        assert f"({name}.png)" in (out / "report.md").read_text()
    text = (out / "report.md").read_text()
    assert "| category | n | chance | base | trained |" in text and "| harmless | 3 | 0.500 |" in text
    assert "Drop from clean HHH" in text and "| 1 | 2 |" in text  # world table: round 1, 2 episodes

    # the same checkpoints give the same numbers again (in-process, no score cache)
    again = tmp_path / "again"
    cfg = config(
        f"models=[{two_checkpoints[0]},{two_checkpoints[1]}]", "labels=[base,trained]", "scoring.cache=false",
        f"bigbench_dir={DATA / 'bigbench'}", f"output_dir={again}", "progress=false",
    )  # fmt: skip
    evaluate(cfg)
    second = json.loads((again / "report.json").read_text())
    assert [m["tasks"] for m in second["models"]] == [m["tasks"] for m in data["models"]]
    assert (out / "predictions" / "trained.jsonl").read_text() == (again / "predictions" / "trained.jsonl").read_text()


def regrade(row: dict, per_token: bool) -> float:
    """The target of the choice with the highest summed (or per-token mean) log-prob; ties to the first."""
    values = [s / n if per_token else s for s, n in zip(row["sum_logprob"], row["n_tokens"], strict=True)]
    best = max(values)
    return float(row["targets"][values.index(best)])


def test_demo_preset_and_cfg_job(tmp_path: Path) -> None:
    proc = sa_eval("eval_preset=demo", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "tasks:\n- hhh\n" in proc.stdout and "world_dir: null" in proc.stdout
    assert list(config("eval_preset=demo", "output_dir=x").tasks) == ["hhh"]
    default = config("output_dir=x")  # the rater check is opt-in (tasks=[rater]) and checks the generate rater
    assert "rater" not in default.tasks and default.rater.mode == "generate" and default.rater_check.limit is None
    assert config("rater=likelihood", "output_dir=x").rater.mode == "likelihood"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    proc = sa_eval("no_such_key=1", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("sa-eval: error:")
    proc = sa_eval("models=[a,b]", "labels=[x]", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "sa-eval: error: labels has 1 entries for 2 models; give one each"
    )
    for overrides, message in [
        (("tasks=[hhh,nope]",), "tasks ['nope'] unknown"),
        (("headline=median",), "headline='median' must be one of sum, mean"),
        (("limit=0",), "limit=0 must be a positive number"),
        (("labels=x",), "labels='x' must be a list or null"),
        (("scoring.max_batch=0",), "scoring.max_batch=0 must be an integer >= 1"),
        (("judge.max_reasks=-1",), "judge.max_reasks=-1 must be an integer >= 0"),  # wrong types: test_conf_schema_*
        (("labels=[a,a]", "models=[x,y]"), "repeat"),
        (("world_dir=/nonexistent/run",), "no episodes file"),
        (("tasks=[judge]", "judge.mode=pairwise"), "pairwise judging needs at least two models"),
        (("models=[/nonexistent/ckpt]", f"bigbench_dir={DATA / 'bigbench'}", "tasks=[hhh]"), "not a checkpoint folder"),
    ]:
        with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
            evaluate(config(*overrides, f"output_dir={tmp_path / 'x'}", "progress=false"))


def _fixture_records() -> list[dict]:
    return [json.loads(line) for line in (DATA / "episodes_fixture.jsonl").read_text().splitlines() if line.strip()]


def test_unusable_checkpoint_output_or_world_fails_in_one_line_before_any_scoring(
    tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_model_dir, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    world = tmp_path / "world.jsonl"
    lines = (DATA / "episodes_fixture.jsonl").read_bytes().splitlines()
    cut = lines[1].index(b'"question"')
    world.write_bytes(lines[0] + b"\n" + lines[1][:cut] + b"\xff" + lines[1][cut:] + b"\n")
    deep = tmp_path / "deep.jsonl"
    deep.write_bytes(lines[0] + b"\n" + b"[" * 5000 + b"\n")  # json.loads: RecursionError
    common = (f"bigbench_dir={DATA / 'bigbench'}", "tasks=[hhh]", "progress=false", "scoring.cache=false")
    for overrides, message in [
        # the good model first: it would be scored (and its predictions written) before the truncated one loads
        ((f"models=[{tiny_model_dir},{truncated}]", f"output_dir={tmp_path / 'out'}"),
         f"{weights} is not a readable safetensors file (Error while deserializing header"),
        ((f"models=[{tiny_model_dir}]", f"output_dir={blocker / 'out'}"),
         f"output folder {blocker / 'out'} is not writable (Not a directory)"),
        ((f"models=[{tiny_model_dir}]", f"output_dir={tmp_path / 'out'}", f"world_dir={world}"),
         f"{world}:2: "),  # environment.records names file and line
        ((f"models=[{tiny_model_dir}]", f"output_dir={tmp_path / 'out'}", f"world_dir={deep}"),
         f"{deep}:2: not a valid episode record (JSON nested too deeply)"),
    ]:  # fmt: skip
        with pytest.raises(UserError) as caught:
            evaluate(config(*overrides, *common))
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value), str(caught.value)
        assert "scored" not in capsys.readouterr().out
        assert not (tmp_path / "out" / "predictions").exists()


def test_read_only_output_folder_is_one_line_before_anything_is_loaded() -> None:
    """A real sa-eval as a user the folder refuses (as root, whom chmod does not stop, it runs as `nobody` through
    setpriv, as tests/test_training_train_inputs.py does): one line naming the folder, exit 2, nothing written."""
    import tempfile

    as_nobody = os.geteuid() == 0
    assert not as_nobody or shutil.which("setpriv"), "as root this test needs setpriv (util-linux) to drop to nobody"
    base = Path(tempfile.mkdtemp(prefix="sa-eval-readonly-"))
    try:
        base.chmod(0o777)
        locked = base / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
        done = subprocess.run(
            [*nobody, SA_EVAL, "models=[embedded:smollm2]", "tasks=[hhh]", f"bigbench_dir={DATA / 'bigbench'}",
             f"output_dir={locked}", f"hydra.run.dir={base / 'run'}", "progress=false"],
            cwd=base, capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(base)},
        )  # fmt: skip
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
        assert lines[0].startswith(f"sa-eval: error: output folder {locked} is not writable"), lines[0]
        assert list(locked.iterdir()) == [] and "scored" not in done.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)
