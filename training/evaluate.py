"""`sa-eval`: evaluate checkpoints (or a backend) on BIG-bench HHH, HHH-Adversarial, TruthfulQA, moral_permissibility
and an LLM judge, and check a rater (`tasks=[rater]`, training.eval.rater_check: the top-level `backend` in the `rater`
mode on HHH answer pairs; no checkpoint is loaded for it); write report.md, report.json and PNG plots into the run dir
(see conf/eval.yaml)."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agents.factory import rater_settings
from conf.cli import hydra_command
from conf.errors import UserError, require, require_writable
from conf.schema import checked
from conf.schema.training import MC_TASKS, EvalApp, as_app
from training.eval import judge as judging
from training.eval import rater_check
from training.eval import tasks as mc
from training.eval.bigbench import bigbench_folder, subsample
from training.eval.report import RULES, _fmt, write_report
from training.eval.world_curves import world_curves

PROG = "sa-eval"
MODEL_TASKS = (*MC_TASKS, "judge")  # the tasks that evaluate `models`; `rater` checks the `backend` alone
BACKEND_MODEL = "backend"


def _label(model: str) -> str:
    if model.startswith("embedded:"):
        return model.split(":", 1)[1]
    return Path(model.rstrip("/")).name or model


def _looks_local(model: str) -> bool:
    """A filesystem path rather than a hub id: absolute, relative with ./ ../ ~, or an existing path."""
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()


def check_checkpoint(model: str) -> None:
    """A local checkpoint must be a folder whose safetensors headers read (a truncated copy fails here, in one line,
    before anything is scored); hub ids, `embedded:*` and `backend` are left to the loader."""
    if model == BACKEND_MODEL or model.startswith("embedded:") or not _looks_local(model):
        return
    from safetensors import SafetensorError, safe_open

    folder = Path(model).expanduser()
    fix = "give an sa-train output folder, a cached hub id or embedded:smollm2"
    require(folder.is_dir(), f"model {model!r} is not a checkpoint folder (no such directory); {fix}")
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), "pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise UserError(f"{weights} is not a readable safetensors file ({error}); re-save or re-copy it") from None


def check_config(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """Validate the user-facing keys (conf/schema/training.py) and the local checkpoints; return (models, labels),
    both empty when no task evaluates the models."""
    app = checked(as_app(cfg, EvalApp))
    if "rater" in app.tasks:  # `rater` and the rating sampling, before anything is loaded (one-line errors)
        rater_settings(cfg, "rater_check")
        rater_check.rating_sampling(cfg)
    if not set(app.tasks) & set(MODEL_TASKS):
        return [], []
    for model in app.models:
        check_checkpoint(model)
    return list(app.models), list(app.labels) if app.labels is not None else [_label(m) for m in app.models]


def build_questions(cfg: DictConfig) -> dict[str, list[mc.Question]]:
    """The questions of each requested multiple-choice task (subsampled with `limit`, same for every model)."""
    wanted = [t for t in cfg.tasks if t in MC_TASKS]
    if not wanted:
        return {}
    folder = bigbench_folder(cfg.bigbench_dir, download=bool(cfg.download))
    builders: dict[str, Callable[[], list[mc.Question]]] = {
        "hhh": lambda: mc.hhh_questions(folder),
        "hhh_adversarial": lambda: mc.hhh_adversarial_questions(folder, mc.load_exchanges(cfg.adversarial.exchanges)),
        "truthful_qa": lambda: mc.truthful_qa_questions(folder, primer=bool(cfg.scoring.truthful_qa_primer)),
        "moral_permissibility": lambda: mc.moral_questions(folder),
    }
    built = {task: builders[task]() for task in wanted}
    for task, questions in built.items():
        if task == "truthful_qa":  # subsample MC1 and MC2 on the same question indices
            keep = {q.index for q in subsample([q for q in questions if q.task.endswith("mc1")], cfg.limit, cfg.seed)}
            built[task] = [q for q in questions if q.index in keep]
        else:
            built[task] = subsample(questions, cfg.limit, cfg.seed)  # type: ignore[arg-type]
    return built


def score_model(model: str, label: str, questions: dict[str, list[mc.Question]], cfg: DictConfig) -> dict[str, Any]:
    """Load one checkpoint, score every task, free it; {summary per task, adversarial drop, records, seconds}."""
    import torch
    from safetensors import SafetensorError

    from conf.paths import cache_dir, resolve_model_path
    from training.eval.scoring import ChoiceScorer, ScoreCache, model_fingerprint
    from training.modeling import load_model_and_tokenizer

    started = time.perf_counter()
    try:
        network, tokenizer = load_model_and_tokenizer(model, cfg.scoring.device, cfg.scoring.dtype)
    except (OSError, ValueError, SafetensorError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot load model {model!r} ({first}); give a checkpoint folder or embedded:smollm2"
        ) from None
    dtype = str(next(network.parameters()).dtype)
    settings = f"{dtype}|{cfg.scoring.max_length}|{cfg.scoring.end_of_turn}"
    fingerprint = model_fingerprint(resolve_model_path(model), settings)
    cache = None
    if cfg.scoring.cache and fingerprint:
        cache = ScoreCache(cache_dir() / "eval_scores" / f"{fingerprint}.json")
    scorer = ChoiceScorer(
        network, tokenizer, batch_tokens=cfg.scoring.batch_tokens, max_batch=cfg.scoring.max_batch,
        max_length=cfg.scoring.max_length, cache=cache, end_of_turn=bool(cfg.scoring.end_of_turn),
    )  # fmt: skip
    records: list[dict[str, Any]] = []
    for task, items in questions.items():
        t0, choices = time.perf_counter(), sum(len(q.choices) for q in items)
        with rater_check._progress(cfg.progress, choices, f"{label} {task}", "choice") as bar:
            records += mc.score_questions(scorer, items, bar.update)
        print(f"{PROG}: {label}: {task} scored ({len(items)} items, {time.perf_counter() - t0:.1f} s)", flush=True)
    summary = mc.summarize(records)
    del network, scorer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "tasks": summary,
        "adversarial_drop": mc.adversarial_drop(summary),
        "fingerprint": fingerprint,
        "dtype": dtype,
        "records": records,
        "seconds": round(time.perf_counter() - started, 1),
    }


async def run_judge(cfg: DictConfig, models: list[str], labels: list[str]) -> dict[str, Any]:
    """Answers from every model, judged 1-10 (or rated 1-7 in `judge.rater_mode`) and/or pairwise against the first
    model."""
    from agents.factory import build_backend, close_all, sampling_from

    questions = judging.load_questions(cfg.judge.questions, cfg.judge.limit)
    judge_node = cfg.judge.backend if cfg.judge.backend is not None else cfg.backend
    answer_sampling = sampling_from(cfg.judge.answer_sampling)
    judge_sampling = sampling_from(cfg.judge.judge_sampling)
    try:
        judge = build_backend(judge_node)
        answers: dict[str, list[str]] = {}
        for model, label in zip(models, labels, strict=True):
            node = cfg.backend if model == BACKEND_MODEL else OmegaConf.merge(cfg.answerer, {"model": model})
            t0 = time.perf_counter()
            answers[label] = await judging.answer_all(build_backend(node), questions, answer_sampling)
            print(f"{PROG}: {label}: answered {len(questions)} judge questions ({time.perf_counter() - t0:.1f} s)")
        per_model = {label: await _judge_model(cfg, judge, questions, answers[label], judge_sampling)
                     for label in labels}  # fmt: skip
        pairwise = []
        if cfg.judge.mode in ("pairwise", "both"):
            reference = labels[0]
            for label in labels[1:]:
                if cfg.judge.rater_mode:
                    records = judging.compare_by_score(per_model[label]["records"], per_model[reference]["records"])
                else:
                    records = await judging.compare_answers(judge, questions, answers[label], answers[reference],
                                                            judge_sampling, int(cfg.judge.max_reasks))  # fmt: skip
                pairwise.append({"model": label, "reference": reference, "by": "score" if cfg.judge.rater_mode
                                 else "judge", **judging.summarize_pairs(records), "records": records})  # fmt: skip
        return {"per_model": per_model, "pairwise": pairwise}
    finally:
        await close_all()


async def _judge_model(
    cfg: DictConfig, judge: Any, questions: list[dict[str, str]], answers: list[str], sampling: Any
) -> dict[str, Any]:
    """One model's judge entry: its scores (judge prompt 1-10, or the observer's 1-7 rating in `judge.rater_mode`,
    which pairwise by score also needs) and per-question records."""
    from agents.raters import Rater, RaterSettings

    mode = cfg.judge.rater_mode
    entry: dict[str, Any] = {"judge_model": judge.model, "n_questions": len(questions), "scores": None,
                             "rater_mode": mode}  # fmt: skip
    records: list[dict[str, Any]] = [{"id": q["id"]} for q in questions]
    if mode:
        rater = Rater(judge, RaterSettings(mode=mode, max_reasks=int(cfg.judge.max_reasks)), sampling)
        records = await judging.rate_answers(rater, questions, answers)
    elif cfg.judge.mode in ("score", "both"):
        records = await judging.score_answers(judge, questions, answers, sampling, int(cfg.judge.max_reasks))
    if mode or cfg.judge.mode in ("score", "both"):
        entry["scores"] = judging.summarize_scores(records, mode)
    entry["records"] = [{**r, "question": q["question"], "answer": a}
                        for r, q, a in zip(records, questions, answers, strict=True)]  # fmt: skip
    return entry


def evaluate(cfg: DictConfig) -> Path:
    """Run the configured evaluation; return the path of report.md."""
    models, labels = check_config(cfg)
    out = Path(str(cfg.output_dir))
    fix = "pass output_dir=<a writable folder> (or hydra.run.dir=...)"
    require_writable(out, f"output folder {out}", fix, create=True)  # a read-only folder fails before any scoring
    world = world_curves(cfg.world_dir) if cfg.world_dir else None  # fail early on a bad world path
    questions = build_questions(cfg)
    results: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "headline": cfg.headline,
        "scoring": OmegaConf.to_container(cfg.scoring, resolve=True),
        "tasks": list(cfg.tasks),
        "limit": cfg.limit,
        "models": [],
        "pairwise": [],
        "world": world,
        "rater_check": None,
    }
    if "rater" in cfg.tasks:  # first: cheap, and it needs no checkpoint
        folder = bigbench_folder(cfg.bigbench_dir, download=bool(cfg.download))
        section, records = asyncio.run(rater_check.run_rater_check(cfg, folder))
        results["rater_check"] = section
        _write_jsonl(out / "rater_check.jsonl", records)
        print(f"{PROG}: rater check ({section['mode']}) done ({len(records)} pairs, {section['seconds']:.1f} s)")
    for model, label in zip(models, labels, strict=True):
        entry: dict[str, Any] = {"label": label, "model": model, "tasks": {}}
        if questions and model != BACKEND_MODEL:
            scored = score_model(model, label, questions, cfg)
            _write_jsonl(out / "predictions" / f"{label}.jsonl", scored.pop("records"))  # ASCII: numbers and names
            entry.update(scored)
        elif questions:
            entry["note"] = "multiple-choice tasks need log-likelihoods from a local checkpoint; judge only"
        results["models"].append(entry)
    if "judge" in cfg.tasks:
        judged = asyncio.run(run_judge(cfg, models, labels))
        for entry in results["models"]:
            entry["judge"] = judged["per_model"][entry["label"]]
        results["pairwise"] = judged["pairwise"]
        _write_jsonl(out / "judge.jsonl", [{"label": k, **r} for k, v in judged["per_model"].items()
                                           for r in v.pop("records")])  # fmt: skip
        for pair in results["pairwise"]:
            _write_jsonl(out / f"pairwise-{pair['model']}-vs-{pair['reference']}.jsonl", pair.pop("records"))
    return write_report(results, out)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def headline_lines(report_json: Path) -> list[str]:
    """One line per model with its headline numbers (printed at the end of a run)."""
    data = json.loads(report_json.read_text(encoding="utf-8"))
    key = RULES[data["headline"]]
    lines = []
    for m in data["models"]:
        parts = [f"{t} {v[key]:.3f}" for t, v in m.get("tasks", {}).items() if v.get(key) is not None]
        if m.get("adversarial_drop"):
            parts.append(f"adversarial drop {m['adversarial_drop'][key]:+.3f}")
        judge = (m.get("judge") or {}).get("scores") or {}
        if judge.get("mean_score") is not None:
            mode = f" ({judge['rater_mode']})" if judge.get("rater_mode") else ""
            parts.append(f"judge{mode} {judge['mean_score']:.2f}/{judge.get('scale', [1, 10])[1]}")
        lines.append(f"{PROG}: {m['label']}: " + (", ".join(parts) or "no scores"))
    for p in data.get("pairwise", []):
        by = " (by score)" if p.get("by") == "score" else ""
        lines.append(f"{PROG}: {p['model']} vs {p['reference']}: win rate{by} {_fmt(p['win_rate'])}")
    check = data.get("rater_check")
    if check:
        lines.append(f"{PROG}: rater ({check['mode']}): {check['verdict']}")
        pair = check.get("pairwise")
        if pair:
            lines.append(
                f"{PROG}: pairwise judge: accuracy {rater_check.fmt(pair['accuracy_better_first'])} (better as A) / "
                f"{rater_check.fmt(pair['accuracy_better_second'])} (better as B), position bias "
                f"{rater_check.fmt(pair['position_bias'])}"
            )
    return lines


@hydra_command("eval", prog=PROG)
def main(cfg: DictConfig) -> None:
    """Console entry point."""
    report = evaluate(cfg)
    for line in headline_lines(report.with_name("report.json")):
        print(line)
    print(f"{PROG}: report: {report}")


if __name__ == "__main__":
    main()
