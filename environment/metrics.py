"""End-of-run numbers (`metrics.json`) and PNG plots from the stored episodes.

Plots: mean alignment and engagement per round for drafts vs revisions; a grid heat map of each agent's mean revision
alignment (at its last position); the distribution of peer and observer ratings on 0.5 bins (invalid ratings counted
apart). `summarize` adds `questions` (repeats: an agent asked again what it already answered), `memory_recall`
(what drafts saw from memory: priors vs own revisions), `signal` (environment.signal.episode_signal) and, when the
ratings carry too little signal to drive the loss, `signal_warning` (one line); `protocol_echoes` (drafts and
revisions that only repeat the society's prompts, agents.echoes) and, when over a quarter of the revisions do,
`echo_warning` (one line).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agents.echoes import ECHO_WORDS, protocol_echo
from environment.analysis import PEER_RATING, STAGES, Tally, by_round, observer_scores
from environment.records import valid_rating
from environment.signal import BINS, bin_key, episode_signal, histogram, noise_warning


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def per_round(records: list[dict[str, Any]]) -> dict[int, dict[str, float | None]]:
    """Per round: `records`, the mean `peer_rating` and the mean of each observer column that holds a value."""
    rows = {}
    for number, tally in by_round(records).items():
        row = {column: tally.mean(column, 4) for column in {*tally.observed(), PEER_RATING}}
        rows[number] = dict(sorted({**row, "records": tally.records}.items()))
    return rows


def question_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Turns, distinct questions, and repeats (an agent asked a question it already answered in an earlier round)."""
    asked = {(int(r["agent_id"]), r.get("question")) for r in records}  # each pair's turns after its first: repeats
    distinct = len({r.get("question") for r in records})
    return {"turns": len(records), "distinct": distinct, "repeats": len(records) - len(asked)}


def memory_recall(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What drafts saw from memory: drafts with a hit, hits per draft, hits from seeded priors vs own revisions."""
    drafts = [r.get("draft") or {} for r in records]
    hits = [h for d in drafts for h in d.get("memory_hits") or []]
    sources = Counter(h.get("source") for h in hits)
    with_hit = [bool(d.get("memory_hits")) for d in drafts]
    return {
        "drafts": len(records),
        "drafts_with_hit": sum(with_hit),
        "hit_rate": _mean(with_hit),
        "hits_per_draft": _mean([len(d.get("memory_hits") or []) for d in drafts]),
        "prior_hits": sources["prior"],
        "revision_hits": sources["revision"],
        "mean_similarity": _mean([float(h["similarity"]) for h in hits if h.get("similarity") is not None]),
    }


def protocol_echoes(records: list[dict[str, Any]], words: int = ECHO_WORDS) -> dict[str, Any]:
    """Drafts and revisions that only echo the protocol (agents.echoes, runs of `words` words), and among the
    revisions the observer rated above their draft (what sa-build-data's realignment samples are made of) how many."""
    counts = Counter()
    for record in records:
        draft_echo, revision_echo = (
            bool(protocol_echo((record.get(stage) or {}).get("text") or "", words, record.get("agent_persona")))
            for stage in STAGES
        )
        scores = observer_scores(record)
        draft, revision = valid_rating(scores["draft_alignment"]), valid_rating(scores["revision_alignment"])
        better = draft is not None and revision is not None and revision > draft
        counts.update(drafts=draft_echo, revisions=revision_echo, improved=better,
                      improved_revisions=better and revision_echo)  # fmt: skip
    return {"words": words, "interactions": len(records), **{key: counts[key] for key in
            ("drafts", "revisions", "improved", "improved_revisions")}}  # fmt: skip


def echo_warning(echoes: dict[str, Any], prog: str) -> str | None:
    """One line when over a quarter of the revisions only echo the protocol (at least 4 interactions); else None."""
    n, revisions = echoes["interactions"], echoes["revisions"]
    if n < 4 or revisions <= n / 4:
        return None
    return (f"{prog}: {revisions} of {n} revisions ({revisions / n:.0%}) only repeat the society's prompts "
            f"({echoes['improved_revisions']} of the {echoes['improved']} rated above their draft among them; "
            "agents/echoes.py): the agent model does not revise; sa-build-data drops them (filter.echo_words), "
            "a larger agent model (backend.model=...) gives data to train on")  # fmt: skip


def summarize(records: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """The metrics.json content."""
    peer = [f["rating"] for r in records for f in r["feedback"]]
    signal = episode_signal(records)
    warning = noise_warning(signal, "sa-simulate")
    echoes = protocol_echoes(records)
    echo_line = echo_warning(echoes, "sa-simulate")
    return {
        **extra,
        "records": len(records),
        "agents": len({int(r["agent_id"]) for r in records}),
        "invalid_peer_ratings": sum(v is None for v in peer),
        "invalid_observer_scores": Tally(records).invalid,
        "peer_rating_counts": {str(k): v for k, v in sorted(Counter(v for v in peer if v is not None).items())},
        "per_round": {str(k): v for k, v in per_round(records).items()},
        "questions": question_stats(records),
        "memory_recall": memory_recall(records),
        "usage": {
            key: sum(r["usage"].get(key, 0) for r in records)
            for key in ("calls", "prompt_tokens", "completion_tokens", "retries")
        },
        "signal": signal,
        **({"signal_warning": warning} if warning else {}),
        "protocol_echoes": echoes,
        **({"echo_warning": echo_line} if echo_line else {}),
    }


def plot_all(records: list[dict[str, Any]], size: int, folder: Path) -> list[Path]:
    """Write the three PNGs; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rounds = per_round(records)
    fig, axes = subplots(1, 2, figsize=(10, 4))
    plot_rounds(axes, sorted(rounds), [rounds[r] for r in sorted(rounds)])
    paths = [save(fig, folder / "ratings_per_round.png", tight=True)]

    obs = [(r["observer"].get("revision") or {}).get("alignment") for r in records]
    grid: dict[tuple[int, int], list[float]] = defaultdict(list)
    last = {int(record["agent_id"]): tuple(record["position"]) for record in records}
    for record, value in zip(records, obs, strict=True):
        if value is not None:
            grid[last[int(record["agent_id"])]].append(value)
    matrix = [[_mean(grid.get((r, c), [])) or float("nan") for c in range(size)] for r in range(size)]
    fig, ax = subplots(figsize=(5, 4.5))
    image = ax.imshow(matrix, vmin=1, vmax=7, cmap="RdYlGn")
    fig.colorbar(image, ax=ax, label="mean revision alignment")
    ax.set(title="per-agent alignment on the grid", xlabel="column", ylabel="row")
    paths.append(save(fig, folder / "alignment_heatmap.png"))

    peer = [f["rating"] for r in records for f in r["feedback"]]
    fig, ax = subplots(figsize=(7, 4))
    width = 0.2  # two bars per 0.5 bin; float ratings land on their nearest bin (environment.signal.histogram)
    for values, shift, label in ((peer, -width / 2, "peer ratings"), (obs, width / 2, "observer revision alignment")):
        bins = histogram(values)
        ax.bar([b + shift for b in BINS], [bins.get(bin_key(b), 0) for b in BINS], width, label=label)
    invalid = sum(v is None for v in peer) + sum(v is None for v in obs)
    title = f"rating distribution ({invalid} invalid, not plotted)"
    ax.set(title=title, xlabel="rating (nearest 0.5)", ylabel="count", xticks=list(range(1, 8)))
    ax.legend()
    paths.append(save(fig, folder / "rating_distribution.png"))
    return paths


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """`matplotlib.pyplot.subplots` on the Agg backend (PNG files, no display): the figures of metrics.json, sa-eval's
    report and sa-experiment's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def plot_rounds(axes: Any, xs: list[int], rows: list[dict[str, Any]], title: str = "", xticks: bool = False) -> None:
    """Mean observer alignment and engagement per round (`rows`, one per round in `xs`), drafts vs revisions, on two
    axes; metrics.json's ratings_per_round.png and sa-eval's world_curves.png (`title` prefix, a tick per round)."""
    for ax, key in zip(axes, ("alignment", "engagement"), strict=True):
        for stage, style in (("draft", "o--"), ("revision", "s-")):
            ax.plot(xs, nan_gaps(row.get(f"{stage}_{key}") for row in rows), style, label=stage)
        ax.set(title=f"{title}mean observer {key} per round", xlabel="round", ylabel=f"{key} (1-7)", ylim=(1, 7))
        if xticks:
            ax.set_xticks(xs)
        ax.legend()


def nan_gaps(values: Iterable[float | None]) -> list[float]:
    """Values to plot, None (unreadable) as NaN: a gap, never a number."""
    return [float("nan") if v is None else v for v in values]


def save(fig: Any, path: Path, dpi: int = 100, tight: bool = False) -> Path:
    """Write `fig` as a PNG (laid out tight first if asked) and close it; return `path`."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
