"""sa-experiment end to end on a tiny random model and the loopback OpenAI stub: every stage runs through the real
console scripts, the report has the table, the paired comparisons and a verdict per claim, a re-run reuses every
stage, and training seeds give different checkpoints. (The statistics themselves: tests/test_training_eval_stats.py.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conf import CONFIG_DIR

BIN = Path(sys.executable).parent
BIGBENCH = Path(__file__).parent / "data" / "bigbench"


def tiny_experiment(folder: Path, url: str, model: Path) -> Path:
    """An experiment config group file for the tiny run (found through --config-dir)."""
    stub = [f"backend.base_url={url}", "backend=openai", "backend.model=stub", "embedder=openai",
            f"embedder.base_url={url}", "embedder.model=stub-embed", "embedder.dim=384"]  # fmt: skip
    config = {
        "name": "tiny",
        "base_model": str(model),
        "worlds": 2,
        "simulate": [
            *stub,
            "world.size=2",
            "world.rounds=2",
            "memory.priors_per_agent=3",
            "run.progress=false",
            "run.plots=false",
        ],  # fmt: skip
        "build_data": [],
        "arms": {"sft": ["loss=sft"], "stable_alignment": ["loss=stable_alignment"]},
        "train_seeds": [0, 1],
        "train": [
            "train.max_steps=2",
            "train.batch_size=2",
            "train.group_size=2",
            "train.max_length=128",
            "train.max_prompt_length=96",
            "train.lr=1e-3",
        ],  # fmt: skip
        "eval": [
            f"bigbench_dir={BIGBENCH}",
            "tasks=[hhh,judge]",
            "judge.mode=both",
            "judge.limit=3",
            "judge.answer_sampling.max_tokens=8",
            *stub[:3],
            "progress=false",
        ],  # fmt: skip
        "headline": "mean",
        "primary": "hhh",
    }
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "tiny.yaml").write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return folder


def sa_experiment(tmp_path: Path, configs: Path, name: str, *args: str) -> str:
    """`sa-experiment --config-dir configs experiment=name ARGS` with its stages under tmp_path/root: it succeeds;
    its output."""
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags (-m) come before the overrides
    argv = [str(BIN / "sa-experiment"), *flags, "--config-dir", str(configs), f"experiment={name}",
            f"root={tmp_path / 'root'}", *(a for a in args if a not in flags)]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_experiment(tmp_path: Path, configs: Path, name: str, report: str = "report") -> dict:
    """One sa-experiment run with its report in tmp_path/report: its experiment.json."""
    sa_experiment(tmp_path, configs, name, f"hydra.run.dir={tmp_path / report}")
    return json.loads((tmp_path / report / "experiment.json").read_text())


@pytest.mark.parametrize("preset", ["cpu_small", "gpu"])
def test_presets_give_every_stage_overrides_its_command_accepts(preset):
    """Each preset's stage overrides compose in that stage's own Hydra app (a wrong key or value type fails here)."""
    from experiment.run import check, plan

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("experiment", [f"experiment={preset}", "root=ROOT", "output_dir=OUT"])
        check(cfg)
        worlds, data, runs, evaluation = plan(cfg)
        for stage, config_name in [(worlds[0], "simulate"), (data, "build_data"), (next(iter(runs.values())), "train"),
                                   (evaluation, "eval")]:  # fmt: skip
            composed = compose(config_name, [*stage.overrides, "hydra.run.dir=X"], return_hydra_config=True)
            assert composed is not None
    e = cfg.experiment
    assert list(e.arms) == ["sft", "stable_alignment", "dpo", "simpo"] and len(e.train_seeds) >= 2
    assert len(runs) == 4 * len(e.train_seeds) and len({s.folder for s in runs.values()}) == len(runs)
    steps = {o for s in runs.values() for o in s.overrides if o.startswith("train.max_steps=")}
    assert len(steps) == 1  # the same schedule for every arm
    assert [w.overrides[-1] for w in worlds] == [f"world.seed={i}" for i in range(e.worlds)]


@pytest.mark.slow
def test_tiny_experiment_runs_every_stage_reports_verdicts_and_reuses_its_cache(tmp_path, tiny_model_dir, openai_stub):
    server = openai_stub()
    configs = tiny_experiment(tmp_path / "conf", server.base_url, tiny_model_dir)
    result = run_experiment(tmp_path, configs, "tiny")
    assert len(result["stages"]) == 2 + 1 + 4 + 1  # worlds, data, 2 arms × 2 seeds, evaluation
    assert all(stage["seconds"] > 0 for stage in result["stages"].values())
    row = result["table"]["hhh"]
    assert row["base"]["seeds"] == 1 and row["sft"]["seeds"] == row["stable_alignment"]["seeds"] == 2
    assert row["sft"]["interval"] is not None and 0 <= row["sft"]["mean"] <= 1
    claims = {(c["claim"], c["metric"]): c for c in result["comparisons"]}
    for claim in ("SA > base", "SA > SFT", "SFT > base"):
        hhh = claims[(claim, "hhh")]
        assert hhh["n"] == 9 and hhh["verdict"] in ("supported", "not supported", "inconclusive at this size")
        assert 0 <= hhh["p_value"] <= 1 and hhh["interval"][0] <= hhh["difference"] <= hhh["interval"][1]
    assert ("SA > base", "win_rate_vs_base") in claims and ("SA > base", "judge_score") in claims
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"- Data: {result['data']['groups']} groups (" in report.split("## What limits these verdicts")[1]
    assert "- **SA > SFT: " in report and "| hhh |" in report and (tmp_path / "report" / "training_curves.png").exists()
    weights = {label: hashlib.sha256((Path(stage["folder"]) / "model.safetensors").read_bytes()).hexdigest()
               for label, stage in result["stages"].items() if label.startswith("train ")}  # fmt: skip
    assert weights["train sft-s0"] != weights["train sft-s1"]  # the training seed changes the run

    rerun = run_experiment(tmp_path, configs, "tiny", "report2")
    assert all(stage["seconds"] == 0 for stage in rerun["stages"].values())  # every stage reused
    assert [s["ran_s"] for s in rerun["stages"].values()] == [s["ran_s"] for s in result["stages"].values()]
    assert rerun["comparisons"] == result["comparisons"]

    # A sweep over the number of worlds: worlds=2 is the run above (every stage reused), worlds=1 trains on the data
    # of world 0 alone; sweep.md puts each job's verdicts side by side.
    out = sa_experiment(
        tmp_path, configs, "tiny", "-m", "experiment.worlds=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"
    )
    assert f"sweep report: {tmp_path / 'sweep' / 'sweep.md'}" in out
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert "experiment=tiny" in summary["every_job"]
    sweep = summary["jobs"]
    assert [(r["overrides"], r["worlds"]) for r in sweep] == [
        (["experiment.worlds=1"], 1),
        (["experiment.worlds=2"], 2),
    ]
    assert sweep[1]["groups"] == result["data"]["groups"] > sweep[0]["groups"]
    assert sweep[1]["claims"]["SA > SFT"] == next(
        c for c in result["comparisons"] if c["claim"] == "SA > SFT" and c["metric"] == "hhh"
    )
    text = (tmp_path / "sweep" / "sweep.md").read_text()
    assert text.count("| `experiment.worlds=") == 2 and (tmp_path / "sweep" / "sweep.png").exists()


def test_the_limits_section_gives_the_power_of_each_primary_comparison_and_the_seed_spread():
    from experiment.report import limits
    from training.eval.stats import items_needed

    results = {"alpha": 0.05, "min_effect": 0.02, "primary": "hhh", "experiment": {"worlds": 2}, "data": None,
               "comparisons": [{"claim": "SA > SFT", "metric": "hhh", "n": 80, "sd": 0.25},
                               {"claim": "SA > SFT", "metric": "judge_score", "n": 8, "sd": 1.0}],
               "table": {"hhh": {"sft": {"mean": 0.5, "interval": [0.48, 0.52]}, "base": {"mean": 0.5, "interval": None}}}}  # fmt: skip
    text = "\n".join(limits(results))
    assert "SA > SFT on hhh: with 80 items (sd of the per-item differences 0.250)" in text
    assert f"needs {items_needed(0.25, 0.02)} items" in text and "judge_score" not in text
    assert "sft ±0.020" in text and "base ±" not in text


def test_a_sweep_with_a_corrupt_job_report_fails_in_one_line_and_writes_nothing(tmp_path):
    """A job folder whose experiment.json is cut short: one line naming the file and the fix, no sweep.md."""
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "experiment.json").write_text('{"primary": "hhh", "compar', encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "experiment.sweep", str(tmp_path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("experiment.sweep: error: ") and str(tmp_path / "0" / "experiment.json") in lines[0]
    assert "re-run that job" in lines[0] and not (tmp_path / "sweep.md").exists()


def test_a_new_data_builder_rebuilds_the_data_and_retrains_but_keeps_the_worlds(monkeypatch):
    """The stage cache keys on overrides, so a builder that makes other data from the same episodes (the echo filter)
    raises training.build_data.BUILDER_VERSION: the data stage's key changes, and with it every training run's."""
    import experiment.run
    from experiment.run import plan

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("experiment", ["experiment=cpu_small", "root=ROOT", "output_dir=OUT"])
    worlds, data, runs, evaluation = plan(cfg)
    monkeypatch.setattr(experiment.run, "BUILDER_VERSION", experiment.run.BUILDER_VERSION + 1)
    worlds2, data2, runs2, evaluation2 = plan(cfg)
    assert [w.key for w in worlds2] == [w.key for w in worlds] and data2.key != data.key
    assert all(runs2[label].key != runs[label].key for label in runs) and evaluation2.key != evaluation.key
