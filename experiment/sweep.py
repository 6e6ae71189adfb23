"""The verdicts of an `sa-experiment -m` sweep side by side: sweep.md, sweep.json and sweep.png in the sweep folder.

    sa-experiment -m experiment=cpu_small experiment.worlds=1,2,4

Each job writes its own report (experiment.json, with the overrides that made it); when the sweep ends, a Hydra
callback (`SweepReport`, named in conf/experiment.yaml) reads every job's experiment.json and writes one row per job:
the overrides that set it apart, the data it trained on, and each claim's paired difference on the primary metric
with its interval, p-value and verdict. `python -m experiment.sweep SWEEP_DIR` writes the same from the folders that exist.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from conf.errors import UserError
from environment.metrics import save, subplots
from experiment.analysis import CLAIMS, difference_text


def jobs(folder: Path) -> list[dict[str, Any]]:
    """The experiment.json of every job under a sweep folder (`<folder>/<job>/experiment.json`), in job order."""
    found = sorted((p for p in folder.glob("*/experiment.json") if p.parent.name.isdigit()),
                   key=lambda p: int(p.parent.name))  # fmt: skip
    results = []
    for path in found:
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")) | {"job": int(path.parent.name)})
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: not a readable experiment.json ({error}); re-run that job (its stages are "
                            "cached) or remove its folder") from None  # fmt: skip
    return results


def shared_overrides(results: list[dict[str, Any]]) -> list[str]:
    """The overrides every job of a sweep of two or more jobs was given (in the first job's order)."""
    given = [job.get("overrides", []) for job in results]
    return [o for o in given[0] if all(o in g for g in given[1:])] if len(given) > 1 else []


def rows(results: list[dict[str, Any]], common: list[str]) -> list[dict[str, Any]]:
    """One row per job: the overrides that set it apart from the other jobs (all but `common`), its data size and
    each claim's comparison on the primary metric."""
    out = []
    for job in results:
        primary, data = job["primary"], job.get("data") or {}
        claims = {c["claim"]: c for c in job["comparisons"] if c["metric"] == primary}
        out.append({
            "job": job["job"], "overrides": [o for o in job.get("overrides", []) if o not in common], "primary": primary,
            "worlds": job["experiment"]["worlds"], "groups": data.get("groups"),
            "claims": {claim: claims.get(claim) for claim, _, _ in CLAIMS},
        })  # fmt: skip
    return out


def _claim_cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return "–"
    return f"{difference_text(c)}, p {c['p_value']:.2g}: {c['verdict']}"


def markdown(table: list[dict[str, Any]], common: list[str]) -> str:
    claims = [claim for claim, _, _ in CLAIMS]
    primaries = sorted({r["primary"] for r in table})
    lines = [f"# sa-experiment sweep: {len(table)} job(s)", "",
             f"Every job: {' '.join(f'`{o}`' for o in common) or '–'}.", "",
             f"Paired difference on the primary metric ({', '.join(primaries)}) [95 % bootstrap], sign-flip p, verdict.",
             "", "| job | overrides | worlds | groups | " + " | ".join(claims) + " |",
             "|---" * (4 + len(claims)) + "|"]  # fmt: skip
    for r in table:
        cells = [str(r["job"]), " ".join(f"`{o}`" for o in r["overrides"]) or "–", str(r["worlds"]),
                 str(r["groups"] if r["groups"] is not None else "–"), *(_claim_cell(r["claims"][c]) for c in claims)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", "![sweep](sweep.png)", ""])


def plot(table: list[dict[str, Any]], path: Path) -> Path:
    """Each claim's difference with its interval, one point per job (labelled by its overrides)."""
    claims = [claim for claim, _, _ in CLAIMS]
    fig, axes = subplots(1, len(claims), figsize=(3.4 * len(claims), 3), squeeze=False, sharey=True)
    labels = [" ".join(r["overrides"]) or f"job {r['job']}" for r in table]
    for ax, claim in zip(axes[0], claims, strict=True):
        for i, r in enumerate(table):
            c = r["claims"][claim]
            if c is not None:
                low, high = c["interval"]
                ax.errorbar([i], [c["difference"]], yerr=[[c["difference"] - low], [high - c["difference"]]], fmt="o",
                            color="C0", capsize=3)  # fmt: skip
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(claim, fontsize=9)
        ax.set_xticks(range(len(table)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_xlim(-0.5, len(table) - 0.5)
    axes[0][0].set_ylabel(f"paired difference ({table[0]['primary'] if table else ''})")
    return save(fig, path, dpi=110, tight=True)


def summarize(folder: Path) -> Path | None:
    """Write sweep.md, sweep.json and sweep.png into a sweep folder; None when no job finished."""
    results = jobs(folder)
    if not results:
        return None
    common = shared_overrides(results)
    table = rows(results, common)
    (folder / "sweep.json").write_text(json.dumps({"every_job": common, "jobs": table}, indent=1) + "\n",
                                       encoding="utf-8")  # fmt: skip
    plot(table, folder / "sweep.png")
    report = folder / "sweep.md"
    report.write_text(markdown(table, common), encoding="utf-8")
    return report


class SweepReport(Callback):
    """Hydra callback: the sweep's summary when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        report = summarize(Path(str(config.hydra.sweep.dir)))
        if report is not None:
            print(f"sa-experiment: sweep report: {report}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python -m experiment.sweep SWEEP_DIR")
    try:
        print(summarize(Path(sys.argv[1])) or f"no finished job under {sys.argv[1]}")
    except UserError as error:
        sys.exit(f"experiment.sweep: error: {error}")
