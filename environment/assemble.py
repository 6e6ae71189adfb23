"""A checked config → a ready World: backends (mixed society, observer), embedder + shared cache, seeded memories,
schedule; and whether such a world fits in memory. The config has passed `conf.schema.checked` (conf/schema/world.py
holds every key's type and range), so every key read here exists and holds a sound value.

Mixed society: `society.groups` is a list of `{name, fraction|count, backend, persona}` (backend: a full backend node,
or null for the top-level `backend`; persona: a name from `agents.prompts.PERSONAS` or a literal system prompt, null
for the neutral one). Agents are assigned to groups by a seeded shuffle, group sizes rounded from the fractions by
largest remainder. Empty list: every agent uses `backend` with the neutral persona.

Raters: `rater` (conf/rater/*.yaml) sets how peers and the observer rate (`generate | logprob | likelihood`);
`observer.rater_mode` gives the observer another mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from agents.backends.usage import UsageTotal
from agents.factory import build_backend, merged_sampling, meter_of, rater_settings
from agents.factory import build_embedder as build_openai
from agents.observer import Observer
from agents.raters import Rater
from agents.social import SocialAgent
from agents.society import assign_models
from conf.errors import UserError, require
from environment.grid import Grid, Layout
from environment.questions import QuestionSchedule, load_questions
from environment.resume import replay
from environment.world import World

DEFAULT_K = 4


def grid_from(cfg: DictConfig) -> tuple[Grid, int]:
    """The grid and the effective k; one line when k does not fit the social circle or an agent has no peer."""
    w = cfg.world
    radius = float(w.radius) if w.radius is not None else float(w.size // 2)
    grid = Grid(w.size, radius, w.torus)
    global_fraction = float(w.global_fraction)
    n_local_max = grid.smallest_circle() if w.circle_top_up else grid.largest_circle()
    if w.k is None:  # each agent takes min(local share, |circle|) (the reference); top_up: capped at the smallest
        k = min(DEFAULT_K, grid.cells - 1 if global_fraction > 0 or not w.circle_top_up else n_local_max)
    else:
        k = w.k
        require(k - round(k * global_fraction) <= n_local_max and k <= grid.cells - 1,
                f"world.k={k} is larger than the social circle ({n_local_max} agents within radius {radius:g} on a "
                f"{w.size}x{w.size} grid); lower world.k, raise world.radius or world.global_fraction")  # fmt: skip
    require(k >= 1 and (grid.smallest_circle() >= 1 or round(k * global_fraction) >= 1),
            f"an agent has no peer within radius {radius:g}; raise world.radius")  # fmt: skip
    return grid, k


def _group_nodes(cfg: DictConfig, n_agents: int, seed: int) -> list[tuple[Any, str | None]]:
    """(backend node, persona) per agent (mixed society by `agents.society.assign_models`)."""
    if not cfg.society.groups:
        return [(cfg.backend, None)] * n_agents
    mix = [{"backend": (group.get("backend") or cfg.backend, group.get("persona")),
            **{key: group[key] for key in ("fraction", "count") if group.get(key) is not None}}
           for group in cfg.society.groups]  # fmt: skip
    assignment = assign_models(mix, list(range(n_agents)), seed)
    return [assignment[a] for a in range(n_agents)]


def build_embedder(cfg: DictConfig) -> Any:
    node = cfg.embedder
    if node.name == "openai":
        return build_openai(node)
    from memory.embedders import LocalEncoder

    try:
        return LocalEncoder(node.model_path, node.batch_size, node.device, node.max_length)
    except ValueError as error:
        raise UserError(str(error)) from None


def counted(built: Any, usage: UsageTotal) -> Any:
    """`built` (a backend or embedder), its usage meter added to the world's total (a local encoder has none)."""
    meter = meter_of(built)
    if meter is not None:
        usage.add(meter)
    return built


def _agents(cfg: DictConfig, n: int, usage: UsageTotal) -> tuple[list[Any], list[str]]:
    """The society's agents (backend, persona, samplings, peer rater) and each one's model name."""
    settings = rater_settings(cfg, "agent")
    agents, models = [], []
    for agent_id, (node, persona) in enumerate(_group_nodes(cfg, n, cfg.world.seed)):
        backend = counted(build_backend(node), usage)
        rating_sampling = merged_sampling(node, cfg.agent.rating_sampling)
        agents.append(SocialAgent(agent_id, backend, merged_sampling(node, cfg.agent.sampling), rating_sampling,
                                  persona=persona, rater=Rater(backend, settings, rating_sampling)))  # fmt: skip
        models.append(str(node.get("model") or backend.model or node.get("name")))
    return agents, models


def _observer(cfg: DictConfig, usage: UsageTotal) -> tuple[Any, str]:
    """The observer (its own backend or the agents') and its model name."""
    node = cfg.observer.backend or cfg.backend
    backend = counted(build_backend(node), usage)
    sampling = merged_sampling(node, cfg.agent.rating_sampling, cfg.observer.sampling)
    observer = Observer(backend, sampling, rater=Rater(backend, rater_settings(cfg, "observer"), sampling))
    return observer, str(node.get("model") or backend.model)


def _memories(cfg: DictConfig, dim: int, n: int) -> tuple[dict[int, Any], list[Any]]:
    """An empty memory store per agent and each agent's seeded priors."""
    from memory.indexes import IndexParams
    from memory.priors import load_priors, seed
    from memory.store import MemoryStore

    mem = cfg.memory
    index_params = {k: mem[k] for k in IndexParams.__dataclass_fields__}
    try:
        stores = {a: MemoryStore(dim, mem.index, recency_weight=float(mem.recency_weight),
                                 recency_half_life=float(mem.recency_half_life), **index_params)
                  for a in range(n)}  # fmt: skip
    except ValueError as error:
        raise UserError(f"memory: {error}") from None
    try:
        priors = seed(
            mem.population, n, mem.priors_per_agent, cfg.world.seed, load_priors(mem.priors_path), cfg.world.size
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    return stores, priors


async def build_world(cfg: DictConfig, usage: UsageTotal, records: list[dict[str, Any]]) -> World:
    """Build the world, its usage counted in `usage`, and bring memory to priors + the revisions in `records`."""
    from memory.cache import EmbeddingCache
    from memory.seeding import fill_stores

    grid, k = grid_from(cfg)
    w, n = cfg.world, grid.cells
    questions = load_questions(cfg.questions.source, cfg.questions.limit)
    agents, models = _agents(cfg, n, usage)
    observer, observer_model = _observer(cfg, usage)
    cache = EmbeddingCache(counted(build_embedder(cfg), usage))
    stores, priors = _memories(cfg, cache.dim, n)
    await fill_stores(stores, cache, dict(enumerate(priors)))
    world = World(
        world_id=str(cfg.world_id), seed=w.seed, layout=Layout(grid, w.movement, w.seed, float(w.move_fraction)),
        schedule=QuestionSchedule(questions, n, w.seed, str(cfg.world_id), w.question_order),
        agents=agents, agent_models=models, observer=observer, observer_model=observer_model,
        embedder=cache, memories=stores, k=k, global_fraction=float(w.global_fraction), circle_top_up=w.circle_top_up,
        memory_top_k=cfg.memory.top_k, memory_threshold=float(cfg.memory.threshold), rounds=w.rounds,
    )  # fmt: skip
    await replay(world, records)
    return world


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
    size, rounds = w.size, w.rounds
    radius = float(w.radius) if w.radius is not None else float(size // 2)
    cells = size * size
    circle = min(cells - 1, _circle_size(size, radius))
    grid = cells * (circle + 8) * CIRCLE_ENTRY_BYTES
    dim = int(cfg.embedder.get("dim") or 384)  # hf_local: 384-d, and has no `dim`
    rows = cells * (cfg.memory.priors_per_agent + rounds)
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
    cap = cfg.run.memory_limit_gb
    if cap is not None:
        limit, source = cap * GB, "run.memory_limit_gb"
    else:
        limit, source = available_memory_bytes(), "available on this machine"
    if limit is None:
        return
    require(need <= limit, f"world.size={cfg.world.size} needs about {need / GB:,.1f} GB ({what}) but "
                           f"{limit / GB:,.1f} GB is {source}; lower world.size (or world.radius, world.rounds, "
                           "memory.priors_per_agent) or raise run.memory_limit_gb")  # fmt: skip
