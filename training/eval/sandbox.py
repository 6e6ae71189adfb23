"""Curves of the SANDBOX world that produced the training data: mean observer alignment and engagement per round,
drafts vs revisions (read through `environment.records`, the pure episode-record module)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from conf.cli import UserError
from environment.records import EpisodeFormatError, read_episodes
from environment.signal import episode_signal, noise_warning

STAGES = ("draft", "revision")
SCORES = ("alignment", "engagement")


def episodes_file(world: str | Path) -> Path:
    """A world's `episodes.jsonl`: the file itself or the sa-simulate run dir holding it."""
    path = Path(str(world)).expanduser()
    if path.is_dir():
        path = path / "episodes.jsonl"
    if not path.is_file():
        raise UserError(f"no episodes file at {path}; pass world_dir=<sa-simulate run dir or its episodes.jsonl>")
    return path


def world_curves(world: str | Path) -> dict[str, Any]:
    """{file, worlds, records, rounds: [{round, n, draft_alignment, ..., revision_engagement}], invalid_scores,
    signal (environment.signal.episode_signal), signal_warning, rater_modes (peer ratings per mode), personas}."""
    path = episodes_file(world)
    table: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    invalid, records, worlds = 0, 0, set()
    episodes: list[dict[str, Any]] = []
    try:
        for record in read_episodes(path):
            records += 1
            episodes.append(record)
            worlds.add(str(record["world_id"]))
            row = table[int(record["round"])]
            row["n"].append(1)
            for stage in STAGES:
                scores = record["observer"].get(stage) or {}
                for key in SCORES:
                    if scores.get(key) is None:
                        invalid += 1
                    else:
                        row[f"{stage}_{key}"].append(scores[key])
    except EpisodeFormatError as error:
        raise UserError(f"{error}; pass the episodes.jsonl written by sa-simulate") from None
    if not records:
        raise UserError(f"{path} holds no episodes; run sa-simulate first")
    rounds = []
    for number in sorted(table):
        row = table[number]
        entry: dict[str, Any] = {"round": number, "n": len(row["n"])}
        for stage in STAGES:
            for key in SCORES:
                values = row.get(f"{stage}_{key}", [])
                entry[f"{stage}_{key}"] = round(sum(values) / len(values), 4) if values else None
        rounds.append(entry)
    signal = episode_signal(episodes)
    modes = Counter(str(f.get("mode", "generate")) for r in episodes for f in r["feedback"])
    return {"file": str(path), "worlds": sorted(worlds), "records": records, "invalid_scores": invalid,
            "rounds": rounds, "signal": signal, "signal_warning": noise_warning(signal, "sa-eval"),
            "rater_modes": dict(modes), "personas": dict(Counter(str(r.get("agent_persona")) for r in episodes))}  # fmt: skip
