"""From sa-eval's per-item outputs to the experiment's table, paired comparisons and verdicts.

Labels: `base` and `<arm>-s<seed>` (one trained checkpoint per arm and training seed). Per-item scores come from
sa-eval's files: `predictions/<label>.jsonl` (multiple choice: the headline rule's grade per item), `judge.jsonl`
(the judge's score of each held-out answer) and `pairwise-<label>-vs-base.jsonl` (win 1, tie ½, loss 0 against base,
both orders). An arm's score on an item is its mean over training seeds; comparisons pair arms item by item
(training.eval.stats).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from training.eval.stats import PairedDifference, paired_difference, seed_interval, verdict

BASE = "base"
OUTCOME = {"win": 1.0, "tie": 0.5, "loss": 0.0}
# The claims the experiment answers: (claim, arm A, arm B) for "A > B".
CLAIMS = (("SA > base", "stable_alignment", BASE), ("SA > SFT", "stable_alignment", "sft"), ("SFT > base", "sft", BASE))

ItemScores = dict[str, dict[str, float]]  # metric -> item id -> score


def label_of(arm: str, seed: int) -> str:
    return f"{arm}-s{seed}"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def difference_text(comparison: dict[str, Any]) -> str:
    """A paired comparison's difference with its interval, as the report and the sweep print it: +0.120 [+0.010, +0.230]."""
    return "{:+.3f} [{:+.3f}, {:+.3f}]".format(comparison["difference"], *comparison["interval"])


def item_scores(eval_dir: Path, label: str, headline: str = "mean") -> ItemScores:
    """Every metric's per-item scores for one label (multiple choice, HHH per category, judge score, win vs base)."""
    field = "score_norm" if headline == "mean" else "score"
    scores: ItemScores = defaultdict(dict)
    for record in _read_jsonl(eval_dir / "predictions" / f"{label}.jsonl"):
        item = f"{record['category']}/{record['index']}"
        scores[record["task"]][item] = float(record[field])
        if record["task"] == "hhh":
            scores[f"hhh/{record['category']}"][item] = float(record[field])
    for record in _read_jsonl(eval_dir / "judge.jsonl"):
        if record.get("label") == label and record.get("score") is not None:
            scores["judge_score"][str(record["id"])] = float(record["score"])
    for record in _read_jsonl(eval_dir / f"pairwise-{label}-vs-{BASE}.jsonl"):
        if record.get("outcome") in OUTCOME:
            scores["win_rate_vs_base"][str(record["id"])] = OUTCOME[record["outcome"]]
    return dict(scores)


def arm_items(per_seed: Sequence[ItemScores], metric: str) -> dict[str, float]:
    """An arm's per-item score: the mean over its seeds, on the items every seed has."""
    present = [s[metric] for s in per_seed if metric in s]
    items = set.intersection(*map(set, present)) if present else set()
    return {item: float(np.mean([p[item] for p in present])) for item in sorted(items)}


def table(arms: dict[str, list[ItemScores]], metrics: Sequence[str], confidence: float = 0.95) -> dict[str, Any]:
    """{metric: {arm: {mean, interval, seeds, per_seed}}}: the mean over seeds of each seed's mean over items."""
    out: dict[str, Any] = {metric: {} for metric in metrics}
    for metric in metrics:
        for arm, per_seed in arms.items():
            if means := [float(np.mean(list(s[metric].values()))) for s in per_seed if s.get(metric)]:
                mean, interval = seed_interval(means, confidence)
                out[metric][arm] = {"mean": mean, "interval": interval, "seeds": len(means), "per_seed": means}
    return out


def compare(
    arms: dict[str, list[ItemScores]], metric: str, a: str, b: str, resamples: int = 10_000, seed: int = 0
) -> PairedDifference | None:
    """The paired comparison of arm a with arm b on `metric` (None when either lacks it)."""
    if a not in arms or b not in arms:
        return None
    left = arm_items(arms[a], metric)
    base_ties = metric == "win_rate_vs_base" and b == BASE  # base against itself ties: compare with 0.5
    right = dict.fromkeys(left, 0.5) if base_ties else arm_items(arms[b], metric)
    items = sorted(set(left) & set(right))
    if len(items) < 2:
        return None
    return paired_difference([left[i] for i in items], [right[i] for i in items], resamples=resamples, seed=seed)


def verdicts(
    arms: dict[str, list[ItemScores]], metrics: Sequence[str], alpha: float, min_effect: float, resamples: int = 10_000
) -> list[dict[str, Any]]:
    """Every claim on every metric: the paired difference, its interval, p-value and verdict."""
    found = [(claim, metric, compare(arms, metric, a, b, resamples)) for claim, a, b in CLAIMS for metric in metrics]
    return [
        {"claim": claim, "metric": metric, **asdict(pair), "verdict": verdict(pair, alpha, min_effect)}
        for claim, metric, pair in found
        if pair is not None
    ]
