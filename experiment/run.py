"""`sa-experiment`: collect W worlds → build one data set → train every arm with S seeds → evaluate base and every
checkpoint → one report with intervals over seeds, paired tests and a verdict per claim (SA > base, SA > SFT,
SFT > base).

    sa-experiment experiment=cpu_small
    sa-experiment experiment=cpu_small experiment.worlds=4 experiment.train_seeds=[0,1,2]
    sa-experiment experiment=cpu_small '+experiment.arms.sa_margin0=["loss=stable_alignment","loss.margin=0"]'
    sa-experiment -m experiment=cpu_small experiment.worlds=1,2,4        (the verdict as the data grows: sweep.md)

Every stage is the real console script with Hydra overrides, cached under `root` by its settings (experiment/stages.py),
so a re-run, a larger sweep or an added arm reuses what exists; the log of every command is in the report folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from conf.cli import hydra_command
from conf.schema import checked
from conf.schema.training import ExperimentApp, as_app
from experiment.analysis import BASE, item_scores, label_of, table, verdicts
from experiment.report import write_report
from experiment.stages import Stage
from training.build_data import BUILDER_VERSION  # in the data stage's key: a new builder rebuilds and retrains

PROG = "sa-experiment"


def check(cfg: DictConfig) -> None:
    """One-line errors for the experiment's own keys (conf/schema/training.py; the stages check theirs)."""
    checked(as_app(cfg, ExperimentApp))


def plan(cfg: DictConfig) -> tuple[list[Stage], Stage, dict[str, Stage], Stage]:
    """Every stage with its folder and inputs: worlds, data, one training run per arm and seed, the evaluation."""
    e, root = cfg.experiment, Path(str(cfg.root))
    worlds = [
        Stage(f"world {seed}", "sa-simulate", [*e.simulate, f"world.seed={seed}"], root / "worlds", [], f"seed{seed}-")
        for seed in range(int(e.worlds))
    ]
    build_overrides = [f"inputs=[{','.join(str(w.folder) for w in worlds)}]", *(e.build_data)]
    world_keys = [w.key for w in worlds]
    data = Stage("data", "sa-build-data", build_overrides, root / "data", [*world_keys, f"builder {BUILDER_VERSION}"])
    runs: dict[str, Stage] = {}
    for arm in e.arms:
        for seed in e.train_seeds:
            overrides = [f"data={data.folder}", f"model.name={e.base_model}", *(e.train),
                         *(e.arms[arm]), f"train.seed={seed}"]  # fmt: skip
            label = label_of(arm, seed)
            runs[label] = Stage(f"train {label}", "sa-train", overrides, root / "train", [data.key], f"{label}-")
    labels = [BASE, *runs]
    models = [str(e.base_model), *(str(s.folder) for s in runs.values())]
    overrides = [f"models=[{','.join(models)}]", f"labels=[{','.join(labels)}]", f"headline={e.headline}", *(e.eval)]
    return worlds, data, runs, Stage("evaluate", "sa-eval", overrides, root / "eval", [s.key for s in runs.values()])


def data_summary(data: Stage) -> dict[str, Any] | None:
    """The data card's counts and signal section (None when sa-build-data wrote no card)."""
    try:
        card = json.loads((data.folder / "data_card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {k: card.get(k) for k in ("episodes", "groups", "responses", "groups_per_kind", "signal")}


def analyse(cfg: DictConfig, evaluation: Stage) -> dict[str, Any]:
    """Per-item scores of every label, the table over seeds and the claims' paired tests."""
    e = cfg.experiment
    arms: dict[str, list] = {BASE: [item_scores(evaluation.folder, BASE, str(e.headline))]}
    for arm in e.arms:
        arms[arm] = [item_scores(evaluation.folder, label_of(arm, s), str(e.headline)) for s in e.train_seeds]
    metrics = sorted({m for per_seed in arms.values() for s in per_seed for m in s},
                     key=lambda m: (m != str(e.primary), "/" in m, m))  # fmt: skip
    return {
        "table": table(arms, metrics),
        "comparisons": verdicts(arms, metrics, float(cfg.alpha), float(cfg.min_effect), int(cfg.resamples)),
        "metrics": metrics,
        "primary": str(e.primary),
    }


def run(cfg: DictConfig) -> Path:
    """Run (or reuse) every stage and write the report; returns report.md's path."""
    check(cfg)
    out = Path(str(cfg.output_dir))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "stages.log"
    worlds, data, runs, evaluation = plan(cfg)
    started, seconds = time.perf_counter(), {}
    for stage in [*worlds, data, *runs.values(), evaluation]:
        seconds[stage.name] = round(stage.run(log), 1)
    results = analyse(cfg, evaluation)
    results |= {
        "experiment": OmegaConf.to_container(cfg.experiment, resolve=True),
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],  # [] outside Hydra
        "alpha": float(cfg.alpha), "min_effect": float(cfg.min_effect),
        "stages": {s.name: {"folder": str(s.folder), "key": s.key, "seconds": seconds[s.name],
                            "ran_s": s.recorded_seconds()} for s in [*worlds, data, *runs.values(), evaluation]},
        "data": data_summary(data),
        "wall_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    (out / "experiment.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    return write_report(results, runs, out)


@hydra_command("experiment", prog=PROG)
def main(cfg: DictConfig) -> None:
    report = run(cfg)
    print(f"{PROG}: report: {report}")
    for line in report.read_text(encoding="utf-8").splitlines():
        if line.startswith("- **"):
            print(f"{PROG}: {line[2:].replace('**', '')}")
