"""The experiment's report: report.md (table over seeds, paired comparisons, verdicts) and PNG plots (training
curves per arm and seed, the primary metric per arm with its interval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from environment.metrics import save, subplots
from experiment.analysis import BASE, CLAIMS, difference_text
from experiment.stages import Stage
from training.eval.report import _fmt
from training.eval.stats import detectable_difference, items_needed


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "–"
    spread = " [{:.3f}, {:.3f}]".format(*entry["interval"]) if entry["interval"] else ""
    return f"{entry['mean']:.3f}{spread}"


def markdown(results: dict[str, Any], plots: list[Path]) -> str:
    e, primary = results["experiment"], results["primary"]
    arms = [BASE, *e["arms"]]
    lines = [
        f"# sa-experiment: {e['name']}",
        "",
        f"Base model `{e['base_model']}`; {e['worlds']} world(s); arms {', '.join(e['arms'])}; training seeds "
        f"{e['train_seeds']}; α = {results['alpha']}, smallest difference that counts = {results['min_effect']}. "
        f"Wall time {results['wall_s'] / 60:.1f} min this run (cached stages count 0); every stage when run: "
        f"{sum(s.get('ran_s') or 0 for s in results['stages'].values()) / 60:.1f} min.",
        "",
        "## Verdicts (primary metric: " + primary + ")",
        "",
    ]
    for claim, _, _ in CLAIMS:
        row = next((c for c in results["comparisons"] if c["claim"] == claim and c["metric"] == primary), None)
        if row is None:
            lines.append(f"- **{claim}: not measured** (an arm or the metric is missing)")
            continue
        lines.append(f"- **{claim}: {row['verdict']}** — paired difference {difference_text(row)} over {row['n']} "
                     f"items, p = {row['p_value']:.3g}")  # fmt: skip
    lines += ["", "## Every metric: mean over training seeds [95 % t-interval]", "",
              "| metric | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]  # fmt: skip
    for metric in results["metrics"]:
        row = results["table"].get(metric, {})
        lines.append(f"| {metric} | " + " | ".join(_cell(row.get(arm)) for arm in arms) + " |")
    lines += ["", "## Paired comparisons (per item, arms averaged over seeds)", "",
              "| claim | metric | items | A | B | A − B [95 % bootstrap] | p (sign-flip) | verdict |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in results["comparisons"]:
        lines.append(f"| {c['claim']} | {c['metric']} | {c['n']} | {c['mean_a']:.3f} | {c['mean_b']:.3f} | "
                     f"{difference_text(c)} | {c['p_value']:.3g} | {c['verdict']} |")  # fmt: skip
    lines += limits(results)
    lines += ["", "## Stages", "", "| stage | seconds this run | seconds when run | folder |", "|---|---|---|---|"]
    for name, stage in results["stages"].items():
        lines.append(f"| {name} | {stage['seconds']:.0f} | {_fmt(stage.get('ran_s'), 0)} | `{stage['folder']}` |")
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    return "\n".join(lines)


def limits(results: dict[str, Any]) -> list[str]:
    """What bounds the verdicts: the data the arms were trained on, the paired tests' power, the seed spread."""
    from training.build_data import signal_lines

    lines = ["", "## What limits these verdicts", ""]
    data, alpha, effect = results.get("data"), results["alpha"], results["min_effect"]
    if data:
        kinds = ", ".join(f"{n} {kind}" for kind, n in data["groups_per_kind"].items())
        lines.append(f"- Data: {data['groups']} groups ({kinds}), {data['responses']} responses, from "
                     f"{data['episodes']} episodes of {results['experiment']['worlds']} world(s).")  # fmt: skip
        lines += [f"- {line}" for line in signal_lines(data["signal"])]
    for c in results["comparisons"]:
        if c["metric"] != results["primary"] or not c.get("sd"):
            continue
        needed = f"; a true difference of {effect} needs {items_needed(c['sd'], effect, alpha)} items" if effect else ""
        lines.append(f"- {c['claim']} on {c['metric']}: with {c['n']} items (sd of the per-item differences "
                     f"{c['sd']:.3f}) the paired test finds a true difference of "
                     f"{detectable_difference(c['sd'], c['n'], alpha):.3f} 80 % of the time{needed}.")  # fmt: skip
    row = results["table"].get(results["primary"], {})
    spreads = {arm: e["interval"] for arm, e in row.items() if e and e.get("interval")}
    if spreads:
        widths = ", ".join(f"{arm} ±{(i[1] - i[0]) / 2:.3f}" for arm, i in spreads.items())
        lines.append(
            f"- Training seeds: half-width of the 95 % t-interval over seeds on {results['primary']}: {widths}."
        )
    return lines


def training_curves(runs: dict[str, Stage]) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) per training label from its TensorBoard scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = {}
    for label, stage in runs.items():
        points: list[tuple[int, float]] = []
        for events in sorted((stage.folder / "tensorboard").glob("events.out.tfevents.*")):
            accumulator = EventAccumulator(str(events)).Reload()
            if "loss" in accumulator.Tags()["scalars"]:
                points += [(e.step, e.value) for e in accumulator.Scalars("loss")]
        curves[label] = sorted(points)
    return curves


def plot(results: dict[str, Any], runs: dict[str, Stage], folder: Path) -> list[Path]:
    arms = list(results["experiment"]["arms"])
    fig, axes = subplots(1, len(arms), figsize=(3.2 * len(arms), 2.8), squeeze=False)
    curves = training_curves(runs)
    for ax, arm in zip(axes[0], arms, strict=True):
        for label, points in curves.items():
            if label.rsplit("-s", 1)[0] == arm and points:
                ax.plot(*zip(*points, strict=True), label=label.rsplit("-", 1)[1])
        ax.set_title(arm, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("training loss")
    paths = [save(fig, folder / "training_curves.png", dpi=110, tight=True)]

    row = results["table"].get(results["primary"], {})
    names = [a for a in [BASE, *arms] if a in row]
    if names:
        fig, ax = subplots(figsize=(1.2 * len(names) + 1.5, 3))
        means = [row[a]["mean"] for a in names]
        errors = [[m - (row[a]["interval"] or (m, m))[0] for a, m in zip(names, means, strict=True)],
                  [(row[a]["interval"] or (m, m))[1] - m for a, m in zip(names, means, strict=True)]]  # fmt: skip
        ax.bar(names, means, yerr=errors, capsize=4, color=["#999999", *["#4c72b0"] * (len(names) - 1)])
        ax.set_ylabel(results["primary"])
        ax.set_title("mean over training seeds, 95 % interval", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        paths.append(save(fig, folder / "primary_metric.png", dpi=110, tight=True))
    return paths


def write_report(results: dict[str, Any], runs: dict[str, Stage], folder: Path) -> Path:
    plots = plot(results, runs, folder)
    path = folder / "report.md"
    path.write_text(markdown(results, plots), encoding="utf-8")
    return path
