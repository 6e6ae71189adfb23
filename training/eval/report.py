"""The evaluation report: `report.json` (all numbers), `report.md` (tables) and PNG plots beside them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from environment.metrics import nan_gaps, plot_rounds, save
from memory.atomic import write_json
from training.eval.bigbench import HHH_CATEGORIES

TASK_TITLES = {
    "hhh": "HHH",
    "hhh_adversarial": "HHH-Adversarial",
    "truthful_qa_mc1": "TruthfulQA MC1",
    "truthful_qa_mc2": "TruthfulQA MC2",
    "moral_permissibility": "Moral permissibility",
}
RULES = {"sum": "score", "mean": "score_norm"}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cell(entry: dict[str, Any] | None, headline: str) -> str:
    """`headline (other rule)`, e.g. `0.548 (0.561)`."""
    if not entry:
        return "–"
    main, other = RULES[headline], RULES["mean" if headline == "sum" else "sum"]
    return f"{_fmt(entry.get(main))} ({_fmt(entry.get(other))})"


def _part(summary: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """A task summary's entry for one category, or the whole summary for "all"."""
    return summary if name == "all" else (summary or {}).get("categories", {}).get(name)


def _first(models: Sequence[dict[str, Any]], task: str) -> dict[str, Any]:
    """The summary of `task` in the first model that has it (its n and chance are every model's)."""
    return next(m["tasks"][task] for m in models if task in m["tasks"])


def _groups(summary: dict[str, Any]) -> list[str]:
    """The HHH categories present in a task summary, in HHH order, then "all"."""
    return [c for c in HHH_CATEGORIES if c in summary["categories"]] + ["all"]


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _table(header: Sequence[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """A markdown table (header, rule, one line per row) and the blank line after it."""
    return [_row(header), "|---" * len(header) + "|", *map(_row, rows), ""]


def markdown(results: dict[str, Any], plots: Sequence[Path]) -> str:
    """The report text; numbers come from `results` (the JSON), plots are linked by file name."""
    headline = results["headline"]
    models = results["models"]
    labels = [m["label"] for m in models]
    other = "length-normalised mean log-prob per token" if headline == "sum" else "summed log-prob"
    lines = ["# sa-eval report", ""]
    if not models:  # `tasks=[rater]` alone: no checkpoint was evaluated
        return "\n".join(lines + _rater_section(results.get("rater_check")) + _plot_lines(plots))
    rows = [[m["label"], f"`{m['model']}`", _fmt(m.get("seconds"), 1)] for m in models]
    lines += _table(["label", "model", "seconds"], rows)
    lines += [
        f"Multiple choice by log-likelihood of each choice as the assistant reply (chat template as in training, "
        f"end-of-turn token {'included' if results['scoring'].get('end_of_turn') else 'excluded'}). Cells: headline "
        f"rule **{'summed log-prob (BIG-bench multiple_choice_grade)' if headline == 'sum' else 'mean log-prob per token (length-normalised)'}** "
        f"(in brackets: {other}). Chance = expected score of a uniform random pick.",
        "",
    ]
    scored = [m for m in models if m.get("tasks")]
    if any("hhh" in m["tasks"] for m in scored):
        lines += _hhh_table(scored, "hhh", "HHH (BIG-bench hhh_alignment)", headline)
    if any("hhh_adversarial" in m["tasks"] for m in scored):
        lines += _hhh_table(scored, "hhh_adversarial", "HHH-Adversarial (misaligned exchange in context)", headline)
        lines[-1:-1] = [
            "",
            "The same items, each preceded by an earlier exchange in which the assistant went along with a "
            "harmful request (`adversarial.exchanges`, default: 8 shipped exchanges, item k gets k mod 8).",
        ]
    if any(m.get("adversarial_drop") for m in scored):
        lines += ["Drop from clean HHH (clean − adversarial, headline rule; positive = the context hurts):", ""]
        lines += ["| | " + " | ".join(m["label"] for m in scored) + " |", "|---" * (len(scored) + 1) + "|"]
        for name in (*HHH_CATEGORIES, "all"):
            drops = [(_part(m.get("adversarial_drop"), name) or {}).get(RULES[headline]) for m in scored]
            lines.append(_row([name, *map(_fmt, drops)]))
        lines.append("")
    others = [t for t in ("truthful_qa_mc1", "truthful_qa_mc2", "moral_permissibility")
              if any(t in m["tasks"] for m in scored)]  # fmt: skip
    if others:
        firsts = {task: _first(scored, task) for task in others}
        cells = {task: [_cell(m["tasks"].get(task), headline) for m in scored] for task in others}
        rows = [[TASK_TITLES[t], firsts[t]["n"], _fmt(firsts[t]["chance"]), *cells[t]] for t in others]
        lines += ["## Other benchmarks", "", *_table(["task", "n", "chance", *(m["label"] for m in scored)], rows)]
        lines += ["TruthfulQA MC1: accuracy over the best answer vs false answers (`task_mc.json`); MC2: "
                  "probability mass on all true answers vs all false ones (`questions.json`).", ""]  # fmt: skip
    lines += _length_table(scored)
    judged = [m for m in models if m.get("judge")]
    if judged:
        first = judged[0]["judge"]
        mode = first.get("rater_mode")
        how = (f"alignment rated 1–7 by the observer's rating in `{mode}` rater mode (judge.rater_mode)" if mode
               else "alignment scored 1–10 by the judge prompt")  # fmt: skip
        lines += ["## LLM judge", "", f"Judge: `{first['judge_model']}`, {first['n_questions']} held-out questions, "
                  f"{how} (unreadable ratings are null and left out of the mean).", "",
                  "| model | mean score | min | max | valid | null |", "|---|---|---|---|---|---|"]  # fmt: skip
        for m in judged:
            j = m["judge"]["scores"] or {}
            lines.append(f"| {m['label']} | {_fmt(j.get('mean_score'), 2)} | {_fmt(j.get('min'), 2)} | "
                         f"{_fmt(j.get('max'), 2)} | {j.get('n_valid', '–')} | {j.get('n_invalid', '–')} |")  # fmt: skip
        lines.append("")
    if results.get("pairwise"):
        by_score = results["pairwise"][0].get("by") == "score"
        how = ("by score: the higher rating wins, equal ratings tie" if by_score
               else "judge prompt, both orders per question")  # fmt: skip
        lines += [f"Pairwise ({how}; win rate = (wins + ties/2) / decided):", ""]
        rows = [
            [p["model"], p["reference"], _fmt(p["win_rate"]), p["wins"], p["losses"], p["ties"], p["n_invalid"]]
            for p in results["pairwise"]
        ]
        lines += _table(["model", "vs", "win rate", "wins", "losses", "ties", "undecided"], rows)
    world = results.get("world")
    if world:
        lines += ["## The world that produced the data", "",
                  f"`{world['file']}`: {world['records']} episodes, worlds {', '.join(world['worlds'])}; "
                  f"unreadable observer scores: {world['invalid_scores']} (null, not averaged).", ""]  # fmt: skip
        curves = [f"{stage}_{score}" for score in ("alignment", "engagement") for stage in ("draft", "revision")]
        rows = [[r["round"], r["n"], *(_fmt(r[c], 2) for c in curves)] for r in world["rounds"]]
        lines += _table(["round", "episodes", *(c.replace("_", " ") for c in curves)], rows)
        lines += _signal_lines(world)
    lines += _rater_section(results.get("rater_check"))
    lines += _plot_lines(plots)
    if len(labels) != len(set(labels)):
        lines += ["Note: some labels repeat; set `labels=[...]` to tell the models apart.", ""]
    return "\n".join(lines)


def _plot_lines(plots: Sequence[Path]) -> list[str]:
    return ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""] if plots else []


def _ci(bounds: Sequence[float] | None, digits: int = 3, empty: str = "–") -> str:
    return empty if not bounds else f"[{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"


def _signal_lines(world: dict[str, Any]) -> list[str]:
    """What the world's ratings can teach: rater mode, spread, ties, gaps, peer–observer agreement."""
    signal = world.get("signal")
    if not signal:
        return []
    modes = ", ".join(f"{m} ({n} peer ratings)" for m, n in sorted(world.get("rater_modes", {}).items()))
    peer, observer = signal["peer"], signal["observer_alignment"]
    agreement = signal["peer_observer_agreement"]
    lines = ["### The ratings behind the data", "",
             f"- rater: {modes or 'none recorded'}; personas: "
             + ", ".join(f"{k} {v}" for k, v in sorted((world.get("personas") or {}).items())),
             f"- peer ratings: {_fmt(peer['valid_share'], 2)} readable of {peer['n']}, mean {_fmt(peer['mean'], 2)}, "
             f"entropy {peer['entropy']:.2f} bits; observer alignment: {_fmt(observer['valid_share'], 2)} readable, "
             f"mean {_fmt(observer['mean'], 2)}, entropy {observer['entropy']:.2f} bits",
             f"- draft and revision scored alike in {_fmt(signal['tied_share'], 2)} of {signal['n_multi']} interactions; "
             f"the better of the two {_fmt(signal['mean_gap'], 2)} higher on average",
             f"- peer–observer agreement (Spearman over {agreement['n']} drafts): {_fmt(agreement['spearman'], 2)}"]  # fmt: skip
    if agreement.get("identical_share") == 1.0:
        lines.append("  (every peer gave the observer's exact rating: one rater, so agreement is 1 by construction)")
    if world.get("signal_warning"):
        lines.append(f"- **{world['signal_warning']}**")
    return [*lines, ""]


def _rater_section(check: dict[str, Any] | None) -> list[str]:
    """`tasks=[rater]`: the rater check's verdict and tables (numbers from report.json's `rater_check`)."""
    if not check:
        return []
    length = check["length"]
    overall = [check["n"], check.get("n_questions", "–"), check["n_readable"]]
    overall += [f"{_fmt(check[k])} {_ci(check[f'{k}_ci'])}" for k in ("accuracy", "accuracy_ties_half")]
    overall += [_fmt(check["tie_rate"]), _fmt(check["unreadable_share"]), _fmt(check["seconds"], 1)]
    lines = [
        "## Rater check",
        "",
        f"Rater `rater={check['mode']}` on backend `{check['backend']}` (`{check['model']}`), observer alignment "
        f"prompt, {check['n']} BIG-bench HHH answer pairs with a known better answer (evaluation data only).",
        "",
        f"**Verdict:** {check['verdict']}.",
        "",
        *_table(["pairs", "questions", "readable", "accuracy [95 % Wilson]", "ties as half [95 % bootstrap]",
                 "tie rate", "unreadable share", "seconds"], [overall]),
        "Accuracy: the better answer rated strictly higher, over pairs with both ratings readable (a tie counts as "
        "wrong; in the second figure as half, whose chance level is 0.5, and which decides the verdict). Several pairs "
        "can share a question: the Wilson interval takes pairs as independent, the bootstrap resamples questions. "
        "Unreadable share: pairs where either rating is null (left out, never a number).",
        "",
        *_table(["category", "pairs", "readable", "accuracy", "ties as half"],
                [[name, c["n"], c["n_readable"], _fmt(c["accuracy"]), _fmt(c["accuracy_ties_half"])]
                 for name, c in check["categories"].items()]),
        (f"Length: the longer answer was rated higher in {_fmt(length['longer_preferred'])} "
         f"{_ci(length['longer_preferred_ci'])} of {length['n_decided']} decided pairs whose answers differ in length; "
         f"the better answer is the longer one in {_fmt(length['better_is_longer'])} of those pairs "
         f"({_fmt(length['better_is_longer_all'])} of all {length['n_differ']} pairs of different length). A rater "
         "that follows length puts the first figure near 1 whatever the second." if length["n_decided"] else
         "Length: no pair whose answers differ in length was decided (all tied or unreadable); the better answer is "
         f"the longer one in {_fmt(length['better_is_longer_all'])} of the {length['n_differ']} pairs of different "
         "length."),
        "",
        *_table(["answer", "pairs rated", "mean", "std", "min", "max"],
                [[side, r["n"], *(_fmt(r[k], 2) for k in ("mean", "std", "min", "max"))]
                 for side, r in check["ratings"].items()]),
    ]  # fmt: skip
    pair = check.get("pairwise")
    if pair:
        lines += [
            f"Pairwise judge (training/eval/judge.py's prompt, same backend), each pair asked in both orders "
            f"({pair['n']} pairs): accuracy with the better answer as A {_fmt(pair['accuracy_better_first'])} "
            f"{_ci(pair['accuracy_better_first_ci'])}, as B {_fmt(pair['accuracy_better_second'])} "
            f"{_ci(pair['accuracy_better_second_ci'])} (a tie or unreadable verdict counts as wrong; unreadable "
            f"{pair['unreadable_first']} / {pair['unreadable_second']}). Position bias: the verdict named the same "
            f"position in both orders in {_fmt(pair['position_bias'])} of {pair['n_both_readable']} pairs readable "
            f"both times (A both times {pair['a_both_times']}, B both times {pair['b_both_times']}); both orders "
            f"combined (ties and conflicting verdicts as half): {_fmt(pair['accuracy_both_orders'])} over "
            f"{pair['n_decided']} pairs.",
            "",
        ]
    return lines


def _length_table(models: Sequence[dict[str, Any]]) -> list[str]:
    """How often each rule picked the shortest choice (items whose choices differ in length)."""
    tasks = [t for t in TASK_TITLES if any(m["tasks"].get(t, {}).get("shortest_sum") is not None for m in models)]
    if not tasks:
        return []
    header = ["task", "right answer longest", *(f"{m['label']}: shortest by sum / mean" for m in models)]
    rows = [
        [TASK_TITLES[task], _fmt(_first(models, task)["correct_longest"])]
        + [" / ".join(_fmt(m["tasks"].get(task, {}).get(k)) for k in ("shortest_sum", "shortest_norm")) for m in models]
        for task in tasks
    ]
    note = (
        "Share of items (whose choices differ in length) where the rule picked the shortest choice (sum / mean rule), "
        "and where the right answer is the longest choice."
    )
    return ["## Length bias", "", note, "", *_table(header, rows)]


def _hhh_table(models: Sequence[dict[str, Any]], task: str, title: str, headline: str) -> list[str]:
    first, rows = _first(models, task), []
    for name in _groups(first):
        entry = _part(first, name) or {}
        cells = [_cell(_part(m["tasks"].get(task), name), headline) for m in models]
        rows.append(["**all**" if name == "all" else name, entry["n"], _fmt(entry["chance"]), *cells])
    return [f"## {title}", "", *_table(["category", "n", "chance", *(m["label"] for m in models)], rows)]


def plot_all(results: dict[str, Any], folder: Path) -> list[Path]:
    """Write the PNGs that apply to `results`; return their paths."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure registry

    key = RULES[results["headline"]]
    scored = [m for m in results["models"] if m.get("tasks")]
    paths: list[Path] = []

    def bars(ax: Any, groups: list[str], series: list[tuple[str, list[float | None]]], chance: list[float | None]):
        width = 0.8 / max(1, len(series))
        for i, (label, values) in enumerate(series):
            xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            drawn = ax.bar(xs, nan_gaps(values), width, label=label)
            ax.bar_label(drawn, labels=[_fmt(v, 2) for v in values], fontsize=7, padding=1)
        for g, level in enumerate(chance):
            if level is not None:
                ax.hlines(level, g - 0.45, g + 0.45, colors="black", linestyles="dotted",
                          label="chance" if g == 0 else None)  # fmt: skip
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)

    for task, name in (("hhh", "hhh_categories.png"), ("hhh_adversarial", "hhh_adversarial_categories.png")):
        have = [m for m in scored if task in m["tasks"]]
        if not have:
            continue
        groups = _groups(have[0]["tasks"][task])
        series = [(m["label"], [(_part(m["tasks"][task], c) or {}).get(key) for c in groups]) for m in have]
        chance = [(_part(have[0]["tasks"][task], c) or {})["chance"] for c in groups]
        ax = Figure(figsize=(max(6, 1.6 * len(groups) + 0.4 * len(have)), 4)).subplots()
        bars(ax, groups, series, chance)
        ax.set(title=f"{TASK_TITLES[task]} accuracy per category", ylabel=f"accuracy ({results['headline']} rule)")
        paths.append(save(ax.figure, folder / name, dpi=110, tight=True))

    tasks = [t for t in TASK_TITLES if any(t in m["tasks"] for m in scored)]
    if tasks:
        ax = Figure(figsize=(max(6, 1.8 * len(tasks) + 0.4 * len(scored)), 4)).subplots()
        series = [(m["label"], [m["tasks"].get(t, {}).get(key) for t in tasks]) for m in scored]
        chance = [_first(scored, t)["chance"] for t in tasks]
        bars(ax, [TASK_TITLES[t] for t in tasks], series, chance)
        ax.set(title="benchmarks", ylabel=f"score ({results['headline']} rule)")
        ax.tick_params(axis="x", labelsize=8)
        paths.append(save(ax.figure, folder / "benchmarks.png", dpi=110, tight=True))

    judged = [m for m in results["models"] if m.get("judge") and m["judge"]["scores"]]
    if judged:
        ax = Figure(figsize=(max(4, 1.2 * len(judged) + 2), 4)).subplots()
        values = [m["judge"]["scores"]["mean_score"] for m in judged]
        drawn = ax.bar([m["label"] for m in judged], nan_gaps(values))
        ax.bar_label(drawn, labels=[_fmt(v, 2) for v in values], fontsize=8)
        low, high = judged[0]["judge"]["scores"].get("scale", [1, 10])
        mode = judged[0]["judge"]["scores"].get("rater_mode")
        title = f"LLM judge: mean rating ({mode} rater)" if mode else "LLM judge: mean alignment score"
        ax.set(title=title, ylabel=f"score ({low}-{high})", ylim=(0, high + 0.5))
        paths.append(save(ax.figure, folder / "judge.png", dpi=110, tight=True))

    check = results.get("rater_check")
    if check and check.get("histogram"):
        hist = check["histogram"]
        edges = hist["edges"]
        ax = Figure(figsize=(7, 4)).subplots()
        for side, colour in (("better", "tab:green"), ("worse", "tab:red")):
            ax.stairs(hist[side], edges, label=f"{side} answer (n={sum(hist[side])} pairs)", color=colour, fill=True,
                      alpha=0.45)  # fmt: skip
        ax.set(title=f"rater check ({check['mode']}): ratings of the better and worse HHH answers",
               xlabel="rating (1-7)", ylabel="pairs", xlim=(edges[0], edges[-1]))  # fmt: skip
        ax.title.set_fontsize(10)
        ax.legend()
        paths.append(save(ax.figure, folder / "rater_ratings.png", dpi=110, tight=True))

    world = results.get("world")
    if world and world["rounds"]:
        fig = Figure(figsize=(10, 4))
        plot_rounds(fig.subplots(1, 2), [r["round"] for r in world["rounds"]], world["rounds"], "world: ", True)
        paths.append(save(fig, folder / "world_curves.png", dpi=110, tight=True))
    return paths


def write_report(results: dict[str, Any], folder: Path) -> Path:
    """Write report.json, the PNGs and report.md into `folder`; return the markdown path."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = plot_all(results, folder)
    results = {**results, "plots": [p.name for p in plots]}
    write_json(folder / "report.json", results)
    path = folder / "report.md"
    path.write_text(markdown(results, plots), encoding="utf-8")
    return path
