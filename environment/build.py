"""Config → a ready World: backends (mixed society, observer), embedder + shared cache, seeded memories, schedule.

Mixed society: `society.groups` is a list of `{name, fraction|count, backend, persona}` (backend: a full backend node,
or null for the top-level `backend`; persona: a name from `agents.prompts.PERSONAS` or a literal system prompt, null
for the neutral one). Agents are assigned to groups by a seeded shuffle, group sizes rounded from the fractions by
largest remainder. Empty list: every agent uses `backend` with the neutral persona.

Raters: `rater` (conf/rater/*.yaml) sets how peers and the observer rate (`generate | logprob | likelihood`);
`observer.rater_mode` gives the observer another mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from conf.cli import UserError, require
from environment.grid import Grid, Layout
from environment.metered import Meter, Metered
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


async def build_world(cfg: DictConfig, meter: Meter, records: list[dict[str, Any]]) -> World:
    """Build the world and bring memory to priors + the revisions in `records` (resume)."""
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
        backend = Metered(build_backend(node), meter)
        rating_sampling = merged_sampling(node, ratings)
        agents.append(SocialAgent(agent_id, backend, merged_sampling(node, answers), rating_sampling,
                                  persona=persona, rater=Rater(backend, peer_rater, rating_sampling)))  # fmt: skip
        models.append(str(node.get("model") or backend.model or node.get("name")))
    observer_node = cfg.observer.backend or cfg.backend
    observer_backend = Metered(build_backend(observer_node), meter)
    observer_sampling = merged_sampling(observer_node, ratings, cfg.observer.get("sampling"))
    observer = Observer(
        observer_backend, observer_sampling, rater=Rater(observer_backend, observer_rater, observer_sampling)
    )
    cache = EmbeddingCache(build_embedder(cfg))
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


def config_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """The settings that decide which turn gets which question and peers: a resume must not change them."""
    w = cfg.world
    keys = {"world_id": cfg.world_id, "size": w.size, "seed": w.seed, "radius": w.radius, "torus": w.torus,
            "movement": w.movement, "k": w.k, "global_fraction": w.global_fraction,
            "questions": cfg.questions.source, "questions_limit": cfg.questions.limit,
            "rater": cfg.get("rater"), "observer_rater_mode": cfg.observer.get("rater_mode"),
            "society": cfg.society.groups}  # fmt: skip
    return OmegaConf.to_container(OmegaConf.create(keys), resolve=True)  # type: ignore[return-value]
