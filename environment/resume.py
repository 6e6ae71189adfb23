"""The resume side of a world: what shapes a turn (`world.json`, compared on every resume, with the defaults a folder
written before a key was recorded was made with) and the memory rebuilt from the stored episodes (`replay`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from conf import changed, flatten
from conf.errors import UserError
from environment.episodes import read_json_object
from environment.questions import load_questions
from environment.world import World

WORLD = "world.json"


async def replay(world: World, records: list[dict[str, Any]]) -> None:
    """Rebuild memory from stored episodes (resume): every distinct question embedded once, in one batch."""
    texts = list(dict.fromkeys(r["question"] for r in records))
    if texts:
        vectors = await world.embedder.embed(texts)
        world._vectors.update(zip(texts, vectors, strict=True))
    for record in records:
        world.remember(record, world._vectors[record["question"]])


FINGERPRINT_FORMAT = 2
# Keys of a backend or embedder node that decide how calls travel, not what they answer: a resume may change them.
TRANSPORT_KEYS = frozenset({"base_url", "api_key_env", "api_key", "limits", "prices", "budget", "http_client",
                            "max_batch_size", "max_wait_ms", "device", "batch_size", "cache", "max_retries", "timeout"})  # fmt: skip
# How long a world runs, not what a turn is: a resume may extend it (world.rounds; stopping.* is not recorded either).
RUN_LENGTH_KEYS = frozenset({"rounds"})


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _model_node(node: Any) -> Any:
    """A backend or embedder node without its transport keys (at any depth, e.g. langchain's chat_model.timeout)."""
    if isinstance(node, Mapping):
        return {k: _model_node(v) for k, v in node.items() if k not in TRANSPORT_KEYS}
    return node


def _groups(groups: Any) -> Any:
    if not isinstance(groups, list):
        return groups
    return [{**g, "backend": _model_node(g.get("backend"))} if isinstance(g, Mapping) else g for g in groups]


def questions_digest(questions: list[Any]) -> str:
    """SHA-256 of the loaded question set (ids and texts, in order): an edited question file changes it."""
    data = json.dumps([[q.id, q.text] for q in questions], ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def priors_digest(path: Any) -> str | None:
    """SHA-256 of the prior file's bytes (null path: the shipped set); None when it cannot be read (the build says
    why in one line)."""
    from memory.priors import shipped_path

    try:
        return hashlib.sha256(Path(path or shipped_path()).expanduser().read_bytes()).hexdigest()
    except OSError:
        return None


def config_fingerprint(cfg: DictConfig, questions: list[Any] | None = None) -> dict[str, Any]:
    """Everything that shapes a turn (`world.json`): a resume must not change it.

    Whole subtrees: `world` (but `rounds`), `memory`, `rater`, `agent`, `observer`, `society`, and the model nodes
    `backend`, `embedder` (and the observer's and the groups' backends) without TRANSPORT_KEYS; `questions` with the
    content hash of the loaded set (`questions`: loaded here when not given); the prior file's content hash.
    """
    if questions is None:
        questions = load_questions(cfg.questions.source, cfg.questions.limit)
    return {
        "format": FINGERPRINT_FORMAT,
        "world_id": str(cfg.world_id),
        "world": {k: v for k, v in (_plain(cfg.world) or {}).items() if k not in RUN_LENGTH_KEYS},
        "questions": {
            "source": _plain(cfg.questions.source),
            "limit": _plain(cfg.questions.limit),
            "sha256": questions_digest(questions),
        },  # fmt: skip
        "backend": _model_node(_plain(cfg.backend)),
        "embedder": _model_node(_plain(cfg.embedder)),
        "memory": _plain(cfg.memory),
        "priors": {"sha256": priors_digest(cfg.memory.priors_path)},
        "rater": _plain(cfg.rater),
        "agent": _plain(cfg.agent),
        "observer": {**_plain(cfg.observer), "backend": _model_node(_plain(cfg.observer.backend))},
        "society": {"groups": _groups(_plain(cfg.society.groups))},
    }


# world.json before FINGERPRINT_FORMAT 2 (no "format" key): its names → today's dotted keys.
_V1_NAMES = {"size": "world.size", "seed": "world.seed", "radius": "world.radius", "torus": "world.torus",
             "movement": "world.movement", "k": "world.k", "global_fraction": "world.global_fraction",
             "questions": "questions.source", "questions_limit": "questions.limit",
             "observer_rater_mode": "observer.rater_mode", "society": "society.groups"}  # fmt: skip
UNKNOWN = "<unknown>"  # a legacy value that cannot be known (the question file's content): not compared
ABSENT = "<not recorded>"  # a key neither the world.json nor LEGACY holds: the resume refuses
# What a world.json that lacks a key was made with: the defaults before the key was recorded (efb7e2d, 2026-12).
LEGACY: dict[str, Any] = {
    "questions.sha256": UNKNOWN, "priors.sha256": UNKNOWN,
    "world.move_fraction": 0.5, "world.circle_top_up": True, "world.question_order": "shuffle",
    "rater.mode": "generate", "rater.top_k": 20, "rater.min_mass": 0.2, "rater.temperature": 0.05,
    "rater.reasons": True,
    "observer.rater_mode": None, "observer.backend": None, "observer.max_reasks": 2,
    "observer.sampling.temperature": None, "observer.sampling.max_tokens": None, "observer.sampling.top_p": None,
    "society.groups": [],
    "agent.max_reasks": 2, "agent.sampling.temperature": None, "agent.sampling.max_tokens": None,
    "agent.sampling.top_p": None, "agent.rating_sampling.temperature": None, "agent.rating_sampling.max_tokens": 64,
    "agent.rating_sampling.top_p": None,
    "backend.name": "hf_local", "backend.model": "embedded:smollm2", "backend.dtype": "auto",
    "backend.sampling.temperature": 1.0, "backend.sampling.max_tokens": 256, "backend.sampling.top_p": 1.0,
    "embedder.name": "hf_local", "embedder.model_path": None, "embedder.max_length": 256,
    "memory.index": "flat", "memory.top_k": 1, "memory.threshold": 0.7, "memory.recency_weight": 0.0,
    "memory.recency_half_life": 5.0, "memory.hnsw_m": 32, "memory.hnsw_ef_construction": 80,
    "memory.hnsw_ef_search": 128, "memory.ivf_nlist": 0, "memory.ivf_nprobe": 16, "memory.ivf_min_train": 2048,
    "memory.priors_per_agent": 50, "memory.population": "all_bad", "memory.priors_path": None,
}  # fmt: skip


def recorded_settings(theirs: Mapping[str, Any]) -> dict[str, Any]:
    """A world.json (any format) as dotted keys; format 1 names are renamed, its society backends filtered."""
    if "format" in theirs:
        return {k: v for k, v in flatten(theirs).items() if k != "format"}
    flat: dict[str, Any] = {}
    for key, value in theirs.items():
        if key == "rater" and isinstance(value, Mapping):
            flat.update(flatten(value, "rater."))
        elif key == "society":
            flat["society.groups"] = _groups(value)
        else:
            flat[_V1_NAMES.get(key, key)] = value
    return flat


def fingerprint_changes(theirs: Mapping[str, Any], mine: Mapping[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    """(key, recorded, now, legacy) for each setting that differs; a key the world.json lacks takes LEGACY's value
    (legacy=True) and one without a legacy value counts as changed."""
    old, new = recorded_settings(theirs), {k: v for k, v in flatten(mine).items() if k != "format"}
    changes = changed(old, new, ABSENT, LEGACY)
    return [(key, before, after, key not in old) for key, before, after in changes if before != UNKNOWN]


def _shown(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def check_fingerprint(run_dir: Path, cfg: DictConfig, questions: list[Any] | None = None) -> None:
    """Refuse to resume a run dir made with settings that shape a turn differently (nothing is written).

    A world.json written before a key was recorded stands for that key's value then (`LEGACY`).
    """
    theirs = read_json_object(run_dir / WORLD, "restore it or choose a new hydra.run.dir", "world settings")
    if theirs is None:
        return
    changes = fingerprint_changes(theirs, config_fingerprint(cfg, questions))
    if changes:
        shown = ", ".join(f"{key} {_shown(before)} → {_shown(after)}" for key, before, after, _ in changes[:4])
        if len(changes) > 4:
            shown += f", and {len(changes) - 4} more ({', '.join(c[0] for c in changes[4:10])})"
        legacy = [key for key, *_, old in changes[:4] if old]
        if legacy:
            shown += f" ({WORLD} predates {', '.join(legacy)}: the old value is the default then)"
        raise UserError(f"{run_dir} holds a world made with other settings: {shown}; use the same settings to resume "
                        "or choose a new hydra.run.dir")  # fmt: skip
