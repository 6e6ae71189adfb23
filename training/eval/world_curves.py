"""Curves of the world that produced the training data: mean observer alignment and engagement per round,
drafts vs revisions (read through `environment.records` and computed by `environment.analysis`, both pure)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from conf.errors import require
from environment.analysis import OBSERVER_COLUMNS, by_round
from environment.episodes import read_or_fail
from environment.signal import episode_signal, noise_warning


def episodes_file(world: str | Path) -> Path:
    """A world's `episodes.jsonl`: the file itself or the sa-simulate run dir holding it."""
    path = Path(str(world)).expanduser()
    if path.is_dir():
        path = path / "episodes.jsonl"
    require(path.is_file(), f"no episodes file at {path}; pass world_dir=<sa-simulate run dir or its episodes.jsonl>")
    return path


def world_curves(world: str | Path) -> dict[str, Any]:
    """{file, worlds, records, rounds: [{round, n, draft_alignment, ..., revision_engagement}], invalid_scores,
    signal (environment.signal.episode_signal), signal_warning, rater_modes (peer ratings per mode), personas}."""
    path = episodes_file(world)
    episodes = [record for _, record in read_or_fail(path, "pass the episodes.jsonl written by sa-simulate")]
    require(bool(episodes), f"{path} holds no episodes; run sa-simulate first")
    tallies = by_round(episodes)
    rounds = [
        {"round": number, "n": tally.records, **{column: tally.mean(column, 4) for column in OBSERVER_COLUMNS}}
        for number, tally in tallies.items()
    ]
    records, invalid = len(episodes), sum(tally.invalid for tally in tallies.values())
    worlds = {str(record["world_id"]) for record in episodes}
    signal = episode_signal(episodes)
    modes = Counter(str(f.get("mode", "generate")) for r in episodes for f in r["feedback"])
    return {"file": str(path), "worlds": sorted(worlds), "records": records, "invalid_scores": invalid,
            "rounds": rounds, "signal": signal, "signal_warning": noise_warning(signal, "sa-eval"),
            "rater_modes": dict(modes), "personas": dict(Counter(str(r.get("agent_persona")) for r in episodes))}  # fmt: skip
