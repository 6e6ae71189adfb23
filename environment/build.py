"""Config → a ready World: backends (mixed society, observer), embedder + shared cache, seeded memories, schedule.

Mixed society: `society.groups` is a list of `{name, fraction|count, backend, persona}` (backend: a full backend node,
or null for the top-level `backend`; persona: a name from `agents.prompts.PERSONAS` or a literal system prompt, null
for the neutral one). Agents are assigned to groups by a seeded shuffle, group sizes rounded from the fractions by
largest remainder. Empty list: every agent uses `backend` with the neutral persona.

Raters: `rater` (conf/rater/*.yaml) sets how peers and the observer rate (`generate | logprob | likelihood`);
`observer.rater_mode` gives the observer another mode.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agents.backends.usage import UsageTotal
from conf.errors import UserError, require
from environment.grid import Grid, Layout
from environment.questions import ORDERS, QuestionSchedule, load_questions
from environment.world import World

DEFAULT_K = 4
MOVEMENTS = ("none", "random_walk")
_INDEX_KEYS = ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nlist", "ivf_nprobe", "ivf_min_train")


def number(value: Any, name: str, kind: type = float, low: float | None = None, high: float | None = None) -> Any:
    """`value` as `kind` (int or float) within [low, high], or a one-line UserError naming the key."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    what = "an integer" if kind is int else "a number"
    bounds = (
        f" in [{low:g}, {high:g}]"
        if low is not None and high is not None
        else f" >= {low:g}"
        if low is not None
        else ""
    )
    in_range = ok and (low is None or value >= low) and (high is None or value <= high)
    require(in_range, f"{name}={value!r} must be {what}{bounds}")
    return kind(value)


def grid_from(cfg: DictConfig) -> tuple[Grid, int]:
    """The grid and the effective k; one-line errors for impossible settings."""
    w = cfg.world
    size = number(w.size, "world.size", int, 1)
    require(size >= 2, "world.size=1 leaves no peers to rate; use world.size >= 2")
    number(w.rounds, "world.rounds", int, 1)
    number(w.seed, "world.seed", int)
    require(w.movement in MOVEMENTS, f"world.movement={w.movement!r} must be one of {', '.join(MOVEMENTS)}")
    number(w.move_fraction, "world.move_fraction", float, 0, 1)
    global_fraction = number(w.global_fraction, "world.global_fraction", float, 0, 1)
    require(isinstance(w.torus, bool), f"world.torus={w.torus!r} must be true or false")
    radius = number(w.radius, "world.radius", float, 0) if w.radius is not None else float(size // 2)
    require(radius > 0, f"world.radius={w.radius} must be > 0 (null: size // 2)")
    grid = Grid(size, radius, bool(w.torus))
    top_up = w.get("circle_top_up", False)
    require(isinstance(top_up, bool), f"world.circle_top_up={top_up!r} must be true or false")
    order = w.get("question_order", "walk")
    require(order in ORDERS, f"world.question_order={order!r} must be one of {', '.join(ORDERS)}")
    n_local_max = grid.smallest_circle() if top_up else grid.largest_circle()
    if w.k is None:  # each agent takes min(local share, |circle|) (the reference); top_up: capped at the smallest
        k = min(DEFAULT_K, grid.cells - 1) if global_fraction > 0 or not top_up else min(DEFAULT_K, n_local_max)
    else:
        k = number(w.k, "world.k", int, 1)
        n_local = k - round(k * global_fraction)
        require(n_local <= n_local_max and k <= grid.cells - 1,
                f"world.k={k} is larger than the social circle ({n_local_max} agents within radius {radius:g} on a "
                f"{size}x{size} grid); lower world.k, raise world.radius or world.global_fraction")  # fmt: skip
    require(k >= 1 and (grid.smallest_circle() >= 1 or round(k * global_fraction) >= 1),
            f"an agent has no peer within radius {radius:g}; raise world.radius")  # fmt: skip
    return grid, k


def _group_nodes(cfg: DictConfig, n_agents: int, seed: int) -> list[tuple[Any, str | None]]:
    """(backend node, persona) per agent (mixed society by `agents.society.assign_models`)."""
    groups = list(cfg.society.groups or [])
    if not groups:
        return [(cfg.backend, None)] * n_agents
    from agents.prompts import PERSONAS
    from agents.society import assign_models

    mix = []
    for i, group in enumerate(groups):
        require(
            hasattr(group, "get"), f"society.groups[{i}] must be a mapping {{name, fraction|count, backend, persona}}"
        )
        unknown = sorted(set(group) - {"name", "fraction", "count", "backend", "persona"})
        require(
            not unknown, f"society.groups[{i}] has unknown key(s) {unknown}; use name, fraction|count, backend, persona"
        )
        persona = group.get("persona")
        require(persona is None or (isinstance(persona, str) and (persona in PERSONAS or " " in persona.strip())),
                f"society.groups[{i}].persona={persona!r} is neither a shipped persona ({', '.join(PERSONAS)}) nor a "
                "system prompt of several words")  # fmt: skip
        entry = {"backend": (group.get("backend") or cfg.backend, persona)}
        for key in ("fraction", "count"):
            if group.get(key) is not None:
                entry[key] = group[key]
        mix.append(entry)
    assignment = assign_models(mix, list(range(n_agents)), seed)
    return [assignment[a] for a in range(n_agents)]


def rater_settings(cfg: DictConfig, role: str) -> Any:
    """`RaterSettings` for the peers (`agent`) or the `observer` (its `rater_mode` overrides the mode)."""
    from agents.raters import RaterSettings

    node = OmegaConf.to_container(cfg.rater, resolve=True) if cfg.get("rater") is not None else {}
    require(
        isinstance(node, dict), f"rater={node!r} must be a rater node; choose with rater=generate|logprob|likelihood"
    )
    if role == "observer" and cfg.observer.get("rater_mode"):
        node["mode"] = cfg.observer.rater_mode
    max_reasks = cfg[role].max_reasks
    number(max_reasks, f"{role}.max_reasks", int, 0)
    known = {"mode", "top_k", "min_mass", "temperature", "reasons"}
    unknown = sorted(set(node) - known)
    require(not unknown, f"unknown rater key(s) {unknown}; use {sorted(known)}")
    return RaterSettings(max_reasks=int(max_reasks), **node)


def merged_sampling(node: Any, *overrides: Any) -> Any:
    """The backend node's `sampling`, with each non-empty override (e.g. `{max_tokens: 32}`) applied on top."""
    from agents.factory import sampling_from

    merged = OmegaConf.create(node.get("sampling") or {})
    for override in overrides:
        if override:
            require(
                isinstance(override, Mapping),
                f"sampling override {override!r} must be a mapping like {{max_tokens: 32}}",
            )
            merged = OmegaConf.merge(merged, {k: v for k, v in override.items() if v is not None})
    return sampling_from(merged)


def build_embedder(cfg: DictConfig) -> Any:
    node = cfg.embedder
    name = node.get("name")
    if name == "openai":
        from agents.factory import build_embedder as build_openai

        return build_openai(node)
    require(name == "hf_local", f"embedder.name={name!r} must be hf_local or openai; choose with embedder=openai")
    from memory.embedders import LocalEncoder

    options = {k: node[k] for k in ("model_path", "batch_size", "device", "max_length") if node.get(k) is not None}
    try:
        return LocalEncoder(**options)
    except ValueError as error:
        raise UserError(str(error)) from None


def counted(built: Any, usage: UsageTotal) -> Any:
    """`built` (a backend or embedder), its usage meter added to the world's total (a local encoder has none)."""
    from agents.factory import meter_of

    meter = meter_of(built)
    if meter is not None:
        usage.add(meter)
    return built


async def build_world(cfg: DictConfig, usage: UsageTotal, records: list[dict[str, Any]]) -> World:
    """Build the world, its usage counted in `usage`, and bring memory to priors + the revisions in `records`."""
    from agents.factory import build_backend
    from agents.observer import Observer
    from agents.raters import Rater
    from agents.social import SocialAgent
    from memory.cache import EmbeddingCache
    from memory.priors import load_priors, seed
    from memory.seeding import fill_stores
    from memory.store import MemoryStore

    grid, k = grid_from(cfg)
    w = cfg.world
    questions = load_questions(cfg.questions.source, cfg.questions.limit)
    n = grid.cells
    nodes = _group_nodes(cfg, n, int(w.seed))
    answers, ratings = cfg.agent.get("sampling"), cfg.agent.get("rating_sampling")
    peer_rater, observer_rater = rater_settings(cfg, "agent"), rater_settings(cfg, "observer")
    agents, models = [], []
    for agent_id, (node, persona) in enumerate(nodes):
        backend = counted(build_backend(node), usage)
        rating_sampling = merged_sampling(node, ratings)
        agents.append(SocialAgent(agent_id, backend, merged_sampling(node, answers), rating_sampling,
                                  persona=persona, rater=Rater(backend, peer_rater, rating_sampling)))  # fmt: skip
        models.append(str(node.get("model") or backend.model or node.get("name")))
    observer_node = cfg.observer.backend or cfg.backend
    observer_backend = counted(build_backend(observer_node), usage)
    observer_sampling = merged_sampling(observer_node, ratings, cfg.observer.get("sampling"))
    observer = Observer(
        observer_backend, observer_sampling, rater=Rater(observer_backend, observer_rater, observer_sampling)
    )
    cache = EmbeddingCache(counted(build_embedder(cfg), usage))
    mem = cfg.memory
    params = {k: int(mem[k]) for k in _INDEX_KEYS if mem.get(k) is not None}
    try:
        stores = {a: MemoryStore(cache.dim, mem.get("index", "flat"), recency_weight=float(mem.get("recency_weight", 0.0)),
                                 recency_half_life=float(mem.get("recency_half_life", 5.0)), **params) for a in range(n)}  # fmt: skip
    except ValueError as error:
        raise UserError(f"memory: {error}") from None
    try:
        items = load_priors(mem.get("priors_path"))
        priors = seed(
            mem.get("population", "all_good"), n, int(mem.get("priors_per_agent", 50)), int(w.seed), items, w.size
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    await fill_stores(stores, cache, dict(enumerate(priors)))
    world = World(
        world_id=str(cfg.world_id), seed=int(w.seed), layout=Layout(grid, w.movement, int(w.seed), float(w.move_fraction)),
        schedule=QuestionSchedule(questions, n, int(w.seed), str(cfg.world_id), str(w.get("question_order", "walk"))),
        agents=agents, agent_models=models,
        observer=observer, observer_model=str(observer_node.get("model") or observer_backend.model),
        embedder=cache, memories=stores, k=k, global_fraction=float(w.global_fraction),
        circle_top_up=bool(w.get("circle_top_up", False)),
        memory_top_k=int(mem.get("top_k", 1)), memory_threshold=float(mem.get("threshold", 0.7)), rounds=int(w.rounds),
    )  # fmt: skip
    await replay(world, records)
    return world


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
    observer = dict(_plain(cfg.observer) or {})
    observer["backend"] = _model_node(observer.get("backend"))
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
        "priors": {"sha256": priors_digest(cfg.memory.get("priors_path"))},
        "rater": _plain(cfg.get("rater")),
        "agent": _plain(cfg.agent),
        "observer": observer,
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


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings → dotted keys (lists and empty mappings are values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


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
    changes = []
    for key in sorted(set(old) | set(new)):
        legacy = key not in old
        before = LEGACY.get(key, ABSENT) if legacy else old[key]
        after = new.get(key, ABSENT)
        if before != UNKNOWN and before != after:
            changes.append((key, before, after, legacy))
    return changes


def _check_sampling(node: Any, name: str) -> None:
    """A sampling node's values, each named in one line (null keeps the layer below)."""
    if node is None:
        return
    require(isinstance(node, Mapping), f"{name}={node!r} must be a mapping like {{max_tokens: 32}}")
    bounds = {"temperature": (float, 0, None), "max_tokens": (int, 1, None), "top_p": (float, 0, 1)}
    for key, (kind, low, high) in bounds.items():
        if node.get(key) is not None:
            number(node[key], f"{name}.{key}", kind, low, high)


def check_settings(cfg: DictConfig) -> None:
    """Every count and rate outside `world.*`, `run.*` and `stopping.*`, named in one line, before any file is touched."""
    for role in ("agent", "observer"):
        rater_settings(cfg, role)  # max_reasks >= 0 and the rater node
    mem = cfg.memory
    counts = {"priors_per_agent": 0, "top_k": 0, "hnsw_m": 1, "hnsw_ef_construction": 1, "hnsw_ef_search": 1,
              "ivf_nlist": 0, "ivf_nprobe": 1, "ivf_min_train": 0}  # fmt: skip
    for key, low in counts.items():
        if mem.get(key) is not None:
            number(mem[key], f"memory.{key}", int, low)
    if mem.get("threshold") is not None:
        number(mem.threshold, "memory.threshold", float, -1, 1)
    if mem.get("recency_weight") is not None:
        number(mem.recency_weight, "memory.recency_weight", float, 0)
    if mem.get("recency_half_life") is not None:
        require(number(mem.recency_half_life, "memory.recency_half_life", float, 0) > 0,
                f"memory.recency_half_life={mem.recency_half_life!r} must be > 0")  # fmt: skip
    nodes = [("backend", cfg.backend), ("observer.backend", cfg.observer.get("backend"))]
    nodes += [(f"society.groups[{i}].backend", g.get("backend")) for i, g in enumerate(cfg.society.groups or [])
              if hasattr(g, "get")]  # fmt: skip
    for name, node in nodes:
        if node is not None and hasattr(node, "get"):
            _check_sampling(node.get("sampling"), f"{name}.sampling")
    for name in ("agent.sampling", "agent.rating_sampling", "observer.sampling"):
        _check_sampling(OmegaConf.select(cfg, name), name)


GB = 1024**3
# Bytes a world holds, rounded up from measurements: a 12x12 stub world (50 priors of 384-d per agent) held ~120 KB
# per agent in Python and numpy objects (tracemalloc) besides FAISS's 50 x 384 x 4 bytes, i.e. ~200 KB in all (this
# estimate: 237 KB); an episode record held 8 KB as Python objects on the stub and 11 KB in the demo world.
AGENT_BYTES = 32 * 1024  # an agent: backend wrappers, rater, memory store and its index
MEMORY_ROW_BYTES = 1024  # a prior or revision in memory: question and answer text, besides its vector (twice 4*dim)
RECORD_BYTES = 16 * 1024  # an episode record kept for the run (draft, k feedbacks, revision, observer scores)
CIRCLE_ENTRY_BYTES = 40  # a cell index in a precomputed circle: an int object and its slot (38 measured, 60x60 grid)


def _circle_size(size: int, radius: float) -> int:
    """How many cells lie within `radius` of a cell (itself excluded), before wrapping: O(radius)."""
    reach = min(int(radius), size - 1)
    return sum(2 * min(int((radius * radius - dr * dr) ** 0.5), reach) + 1 for dr in range(-reach, reach + 1)) - 1


def world_memory_bytes(cfg: DictConfig) -> tuple[int, str]:
    """An estimate of the memory the world needs (grid circles, agents, memories, records) and what drives it."""
    w = cfg.world
    size = number(w.size, "world.size", int, 1)
    rounds = number(w.rounds, "world.rounds", int, 1)
    radius = number(w.radius, "world.radius", float, 0) if w.radius is not None else float(size // 2)
    cells = size * size
    circle = min(cells - 1, _circle_size(size, radius))
    grid = cells * (circle + 8) * CIRCLE_ENTRY_BYTES
    dim = int(cfg.embedder.get("dim") or 384)
    priors = int(number(cfg.memory.get("priors_per_agent", 50), "memory.priors_per_agent", int, 0))
    rows = cells * (priors + rounds)
    total = grid + cells * AGENT_BYTES + rows * (2 * 4 * dim + MEMORY_ROW_BYTES) + cells * rounds * RECORD_BYTES
    return total, f"{cells:,} agents with circles of {circle:,}, {cells * rounds:,} turns"


def available_memory_bytes() -> int | None:
    """RAM available now (MemAvailable), lowered to what a cgroup (container) limit leaves; None if unknown."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes",
                                                                        "memory/memory.usage_in_bytes")):  # fmt: skip
        try:
            root = Path("/sys/fs/cgroup")
            left = int((root / limit_file).read_text().strip()) - int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        available = left if available is None else min(available, left)
    return available


def check_world_memory(cfg: DictConfig) -> None:
    """Refuse a world whose estimated memory exceeds `run.memory_limit_gb` (null: the RAM available now)."""
    need, what = world_memory_bytes(cfg)
    cap = cfg.run.get("memory_limit_gb")
    if cap is not None:
        limit, source = number(cap, "run.memory_limit_gb", float, 0) * GB, "run.memory_limit_gb"
    else:
        limit, source = available_memory_bytes(), "available on this machine"
    if limit is None:
        return
    require(need <= limit, f"world.size={cfg.world.size} needs about {need / GB:,.1f} GB ({what}) but "
                           f"{limit / GB:,.1f} GB is {source}; lower world.size (or world.radius, world.rounds, "
                           "memory.priors_per_agent) or raise run.memory_limit_gb")  # fmt: skip
