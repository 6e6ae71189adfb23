"""Schemas of sa-simulate's config groups (backend, embedder, memory, rater, stopping, world) and of its top level.

Each `conf/<group>/*.yaml` names its schema in its defaults list (`/schema/<group>/<name>@_here_`), so Hydra rejects
an unknown key or a wrong type while composing. The checks a type cannot express sit in each class's `check(key)`
(`key`: where the node sits, e.g. `observer.backend`); `SimulateConfig.__post_init__` runs them all when the command
calls `conf.schema.checked(cfg)`. A backend or embedder node given as a plain mapping (`observer.backend`, a society
group, sa-eval's judge, a test) is typed by `backend_node` / `embedder_node`, which fills the defaults below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf.errors import UserError, require
from conf.schema.checks import at_least, at_least_if_set, one_of, positive

Number = int | float
MOVEMENTS = ("none", "random_walk")
SCOPES = ("global", "per_endpoint")
GROUP_KEYS = ("name", "fraction", "count", "backend", "persona")
ORDERS = ("walk", "shuffle")  # world.question_order (environment.questions.QuestionSchedule)
# stopping.plateau.score (environment.analysis.society_score). `product_of_means` (the paper): mean alignment x mean
# engagement; `mean_of_products` (the rule before 2026-12): the mean over agents of alignment x engagement. Both from
# the observer's revision scores.
SOCIETY_SCORES = ("product_of_means", "mean_of_products")
# What replaced `budget` in a backend or embedder node (conf.cli names it for an override of the removed key too).
BUDGET_MOVED = (
    "sa-simulate's stopping.budget.max_calls, max_tokens or max_cost (USD): one budget for all of a world's backends "
    "together"
)


@dataclass
class Sampling:
    """Sampling applied on top of the layer below (`agent.sampling`, `observer.sampling`...): null keeps its value."""

    temperature: Number | None = None
    max_tokens: int | None = None
    top_p: Number | None = None

    def check(self, key: str) -> None:
        at_least_if_set(key, self, temperature=(0, float), max_tokens=(1, int), top_p=(0, float, 1))


@dataclass
class BackendSampling(Sampling):
    """A backend's own sampling (reference: temperature 1.0, max_tokens 256 for every call)."""

    temperature: Number = 1.0
    max_tokens: int = 256
    top_p: Number = 1.0


@dataclass
class LocalLimits:
    """Wrapper layers around a backend (agents.factory.stack); null or missing = the layer is off."""

    concurrency: int | None = None
    rpm: Number | None = None
    tpm: Number | None = None
    timeout_s: Number | None = None
    max_retries: int = 0

    def check(self, key: str) -> None:
        for name in ("concurrency", "rpm", "tpm", "timeout_s", "backoff_base_s", "backoff_max_s",
                     "retry_after_max_s", "cooldown_s"):  # fmt: skip
            positive(f"{key}.{name}", getattr(self, name, None))
        at_least(f"{key}.max_retries", self.max_retries, 0, int)


@dataclass
class HTTPLimits(LocalLimits):
    """Limits of an HTTP backend: retries back off exponentially, honouring Retry-After up to its cap."""

    backoff_base_s: Number = 1.0
    backoff_max_s: Number = 60.0
    retry_after_max_s: Number = 120.0


@dataclass
class PoolLimits(HTTPLimits):
    """Limits of an OpenAI-compatible client; the last three apply to an endpoint pool (a list of base_url)."""

    scope: str = "global"
    cooldown_s: Number = 10.0
    bench_after: int = 2

    def check(self, key: str) -> None:
        super().check(key)
        one_of(f"{key}.scope", self.scope, SCOPES)
        at_least(f"{key}.bench_after", self.bench_after, 1, int)


def check_urls(key: str, urls: Any) -> None:
    """`base_url`: null, one URL or a list of distinct URLs (an endpoint pool)."""
    if urls is None or isinstance(urls, str):
        return
    require(isinstance(urls, list) and urls and all(isinstance(u, str) and u for u in urls),
            f"{key}={urls!r} must be one URL or a list of URLs (e.g. [http://h1:8000/v1,http://h2:8000/v1])")  # fmt: skip
    twice = sorted({u for u in urls if urls.count(u) > 1})
    require(not twice, f"{key} lists {twice[0] if twice else ''} more than once; list each endpoint once")


@dataclass
class HFLocalBackend:
    """conf/backend/hf_local.yaml: an in-process transformers model."""

    name: str = "hf_local"
    model: str = "embedded:smollm2"
    device: str = "auto"
    dtype: str = "auto"
    max_batch_size: int = 16
    max_wait_ms: Number = 10
    sampling: BackendSampling = field(default_factory=BackendSampling)
    limits: LocalLimits = field(default_factory=LocalLimits)
    prices: dict[str, Any] = field(default_factory=dict)

    def check(self, key: str) -> None:
        self.sampling.check(f"{key}.sampling")
        self.limits.check(f"{key}.limits")


@dataclass
class OpenAIBackend:
    """conf/backend/openai.yaml: OpenAI or an OpenAI-compatible server (one URL or a pool)."""

    name: str = "openai"
    model: str | None = None
    base_url: Any = None
    api_key_env: str | None = "OPENAI_API_KEY"
    api: str = "chat"
    max_tokens_param: str = "max_tokens"
    http_client: str = "aiohttp"
    sampling: BackendSampling = field(default_factory=BackendSampling)
    limits: PoolLimits = field(default_factory=PoolLimits)
    prices: dict[str, Any] = field(default_factory=dict)

    def check(self, key: str) -> None:
        check_client(self, key)
        self.sampling.check(f"{key}.sampling")


@dataclass
class LangChainBackend:
    """conf/backend/langchain.yaml: any langchain-core chat model built from `chat_model` (a `_target_` node)."""

    name: str = "langchain"
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    pass_sampling: bool = True
    max_tokens_param: str = "max_tokens"
    chat_model: dict[str, Any] = field(default_factory=dict)
    sampling: BackendSampling = field(default_factory=BackendSampling)
    limits: HTTPLimits = field(default_factory=HTTPLimits)
    prices: dict[str, Any] = field(default_factory=dict)

    def check(self, key: str) -> None:
        require("_target_" in self.chat_model,
                f"{key}.chat_model._target_ is missing; set it to e.g. langchain_openai.ChatOpenAI")  # fmt: skip
        self.sampling.check(f"{key}.sampling")
        self.limits.check(f"{key}.limits")


@dataclass
class HFLocalEmbedder:
    """conf/embedder/hf_local.yaml: the local sentence encoder (memory.embedders.LocalEncoder)."""

    name: str = "hf_local"
    model_path: str | None = None
    batch_size: int = 64
    device: str = "cpu"
    max_length: int = 256

    def check(self, key: str) -> None:
        """Its values are checked by memory.embedders.LocalEncoder."""


@dataclass
class OpenAIEmbedder:
    """conf/embedder/openai.yaml: an OpenAI-compatible /v1/embeddings endpoint (or a pool of them)."""

    name: str = "openai"
    model: str | None = None
    base_url: Any = None
    api_key_env: str | None = "OPENAI_API_KEY"
    dim: int | None = None
    batch_size: int = 64
    http_client: str = "aiohttp"
    limits: PoolLimits = field(default_factory=PoolLimits)
    prices: dict[str, Any] = field(default_factory=dict)

    def check(self, key: str) -> None:
        check_client(self, key)


def check_client(node: OpenAIBackend | OpenAIEmbedder, key: str) -> None:
    """What an OpenAI-compatible client needs: a model, its URL(s) and sound limits (agents.backends.openai_compat
    checks `api` and `http_client`)."""
    require(bool(node.model), f"{key}.model is not set for backend {node.name}; pass {key}.model=NAME")
    check_urls(f"{key}.base_url", node.base_url)
    node.limits.check(f"{key}.limits")


BACKENDS: dict[str, type] = {"hf_local": HFLocalBackend, "openai": OpenAIBackend, "langchain": LangChainBackend}
EMBEDDERS: dict[str, type] = {"hf_local": HFLocalEmbedder, "openai": OpenAIEmbedder}


def typed(schema: type, node: Any, key: str) -> Any:
    """A mapping (or config node) as an instance of `schema`, defaults filled; one line naming `key` otherwise."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return node
    data = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    require(isinstance(data, Mapping), f"{key}={data!r} must be a mapping")
    known = [f.name for f in dataclasses.fields(schema)]
    unknown = sorted(set(data) - set(known))
    require(not unknown, f"unknown {key} key(s) {unknown}; use {sorted(known)}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(schema, data))
    except OmegaConfBaseException as error:
        where = getattr(error, "full_key", "") or ""
        raise UserError(f"{key}.{where}: {str(error).splitlines()[0]}" if where else f"{key}: {error}") from None


def _typed_node(kinds: dict[str, type], node: Any, key: str, fix: str) -> Any:
    """`node` (mapping, config node or schema instance) typed by the schema its `name` picks, and checked."""
    data = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if isinstance(data, Mapping) and "budget" in data:
        # `budget` was removed (a backend no longer refuses calls): it may only be left empty, as in a config saved by
        # an earlier version; a value fails naming the run's one budget.
        data = dict(data)
        budget = data.pop("budget")
        require(budget is None or (isinstance(budget, Mapping) and all(v is None for v in budget.values())),
                f"{key}.budget was removed; use {BUDGET_MOVED}")  # fmt: skip
    name = data.get("name") if isinstance(data, Mapping) else getattr(data, "name", None)
    require(name in kinds, f"{key}.name={name!r} is not one of {', '.join(kinds)}; {fix}")
    typed_node = typed(kinds[name], data, key)
    typed_node.check(key)
    return typed_node


def backend_node(node: Any, key: str = "backend") -> Any:
    """A backend node typed by its `name` and checked."""
    return _typed_node(BACKENDS, node, key, "choose with backend=openai etc.")


def embedder_node(node: Any, key: str = "embedder") -> Any:
    """An embedder node typed by its `name` and checked."""
    return _typed_node(EMBEDDERS, node, key, "choose with embedder=openai")


@dataclass
class Memory:
    """conf/memory/default.yaml: each agent's memory store and its seeded priors."""

    index: str = "flat"
    top_k: int = 1
    threshold: Number = 0.5
    recency_weight: Number = 0.0
    recency_half_life: Number = 5.0
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    ivf_nlist: int = 0
    ivf_nprobe: int = 16
    ivf_min_train: int = 2048
    priors_per_agent: int = 50
    population: str = "all_bad"
    priors_path: str | None = None

    def check(self, key: str) -> None:
        for name, low in (("priors_per_agent", 0), ("top_k", 0), ("hnsw_m", 1), ("hnsw_ef_construction", 1),
                          ("hnsw_ef_search", 1), ("ivf_nlist", 0), ("ivf_nprobe", 1), ("ivf_min_train", 0)):  # fmt: skip
            at_least(f"{key}.{name}", getattr(self, name), low, int)
        at_least(f"{key}.threshold", self.threshold, -1, float, 1)
        at_least(f"{key}.recency_weight", self.recency_weight, 0)
        require(self.recency_half_life > 0, f"{key}.recency_half_life={self.recency_half_life!r} must be > 0")


@dataclass
class Rater:
    """conf/rater/*.yaml: how peers and the observer rate (agents.raters.RaterSettings checks the values)."""

    mode: str = "generate"
    top_k: int = 20
    min_mass: Number = 0.2
    temperature: Number = 0.05
    reasons: bool = True

    def check(self, key: str) -> None:
        """RaterSettings' own checks (their messages name `rater.*`, where sa-simulate and sa-eval keep it)."""
        from agents.raters import RaterSettings

        RaterSettings(**dataclasses.asdict(self))


@dataclass
class Plateau:
    """Stop once mean alignment x engagement gained <= epsilon over `window` rounds (0: off)."""

    window: int = 0
    epsilon: Number = 0.0
    score: str = "product_of_means"


@dataclass
class Budget:
    """The run's one budget (environment.stopping.Budget): null = no limit."""

    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost: Number | None = None


@dataclass
class Stopping:
    """conf/stopping/*.yaml: the plateau rule and the budget."""

    plateau: Plateau = field(default_factory=Plateau)
    budget: Budget = field(default_factory=Budget)

    def check(self, key: str) -> None:
        at_least(f"{key}.plateau.window", self.plateau.window, 0, int)
        at_least(f"{key}.plateau.epsilon", self.plateau.epsilon, 0)
        one_of(f"{key}.plateau.score", self.plateau.score, SOCIETY_SCORES)
        at_least_if_set(f"{key}.budget", self.budget, max_calls=(0, int), max_tokens=(0, int), max_cost=(0, float))


@dataclass
class World:
    """conf/world/default.yaml: the grid, who rates whom, and the question order."""

    size: int = 3
    rounds: int = 2
    radius: Number | None = None
    torus: bool = True
    movement: str = "none"
    move_fraction: Number = 0.5
    k: int | None = None
    global_fraction: Number = 0.0
    circle_top_up: bool = False
    question_order: str = "walk"
    seed: int = 0

    def check(self, key: str) -> None:
        at_least(f"{key}.size", self.size, 1, int)
        require(self.size >= 2, f"{key}.size=1 leaves no peers to rate; use {key}.size >= 2")
        at_least(f"{key}.rounds", self.rounds, 1, int)
        one_of(f"{key}.movement", self.movement, MOVEMENTS)
        at_least(f"{key}.move_fraction", self.move_fraction, 0, float, 1)
        at_least(f"{key}.global_fraction", self.global_fraction, 0, float, 1)
        require(self.radius is None or self.radius > 0, f"{key}.radius={self.radius} must be > 0 (null: size // 2)")
        at_least_if_set(key, self, k=(1, int))
        one_of(f"{key}.question_order", self.question_order, ORDERS)


@dataclass
class Agent:
    """The peers' re-asks and the sampling of their drafts/revisions and of their ratings."""

    max_reasks: int = 2
    sampling: Sampling = field(default_factory=Sampling)
    rating_sampling: Sampling = field(default_factory=lambda: Sampling(max_tokens=64))

    def check(self, key: str) -> None:
        at_least(f"{key}.max_reasks", self.max_reasks, 0, int)
        self.sampling.check(f"{key}.sampling")
        self.rating_sampling.check(f"{key}.rating_sampling")


@dataclass
class Observer:
    """The observer: its own backend and rater mode (null: the agents'), sampling and re-asks."""

    backend: Any = None  # null: the agents' backend; or a full backend node
    rater_mode: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    max_reasks: int = 2

    def check(self, key: str) -> None:
        if self.backend is not None:
            self.backend = backend_node(self.backend, f"{key}.backend")
        if self.rater_mode is not None:
            Rater(mode=self.rater_mode).check(key)
        at_least(f"{key}.max_reasks", self.max_reasks, 0, int)
        self.sampling.check(f"{key}.sampling")


@dataclass
class Society:
    """A mixed society (empty: every agent on `backend`, neutral persona)."""

    groups: list[Any] = field(default_factory=list)  # [{name, fraction|count, backend, persona}]

    def check(self, key: str) -> None:
        from agents.prompts import PERSONAS

        for i, group in enumerate(self.groups):
            at = f"{key}.groups[{i}]"
            require(isinstance(group, Mapping), f"{at} must be a mapping {{name, fraction|count, backend, persona}}")
            unknown = sorted(set(group) - set(GROUP_KEYS))
            require(not unknown, f"{at} has unknown key(s) {unknown}; use name, fraction|count, backend, persona")
            persona = group.get("persona")
            require(persona is None or (isinstance(persona, str) and (persona in PERSONAS or " " in persona.strip())),
                    f"{at}.persona={persona!r} is neither a shipped persona ({', '.join(PERSONAS)}) nor a system "
                    "prompt of several words")  # fmt: skip
            if group.get("backend") is not None:
                backend_node(group["backend"], f"{at}.backend")


@dataclass
class Questions:
    """Where the questions come from and how many are used (null: all)."""

    source: str = "builtin"
    limit: int | None = None

    def check(self, key: str) -> None:
        at_least_if_set(key, self, limit=(1, int))


@dataclass
class Run:
    """How the run is driven and recorded (nothing here shapes a turn)."""

    max_inflight: int = 0
    progress: bool = True
    progress_log_every_s: Number = 30
    snapshot_every_s: Number = 30
    fsync_every: int = 16
    plots: bool = True
    browser: bool = True
    memory_limit_gb: Number | None = None

    def check(self, key: str) -> None:
        at_least(f"{key}.max_inflight", self.max_inflight, 0, int)
        at_least(f"{key}.fsync_every", self.fsync_every, 1, int)
        at_least(f"{key}.snapshot_every_s", self.snapshot_every_s, 0)
        at_least(f"{key}.progress_log_every_s", self.progress_log_every_s, 1)
        at_least_if_set(key, self, memory_limit_gb=(0,))


@dataclass
class SimulateConfig:
    """conf/simulate.yaml. Field order is the composed order (the groups, then the file's own keys)."""

    backend: Any = MISSING
    embedder: Any = MISSING
    memory: Memory = field(default_factory=Memory)
    world: World = field(default_factory=World)
    stopping: Stopping = field(default_factory=Stopping)
    rater: Rater = field(default_factory=Rater)
    experiment: str = "sandbox"
    world_id: str = MISSING
    agent: Agent = field(default_factory=Agent)
    observer: Observer = field(default_factory=Observer)
    society: Society = field(default_factory=Society)
    questions: Questions = field(default_factory=Questions)
    run: Run = field(default_factory=Run)

    def __post_init__(self) -> None:
        self.backend = backend_node(self.backend, "backend")
        self.embedder = embedder_node(self.embedder, "embedder")
        for part in ("memory", "world", "stopping", "rater", "agent", "observer", "society", "questions", "run"):
            getattr(self, part).check(part)


# What each YAML names in its defaults: `/schema/<group>` (memory, rater, stopping, world), `/schema/backend/<name>`,
# `/schema/embedder/<name>` and `/schema/simulate` (conf/simulate.yaml); conf.schema.register_schemas stores them.
SCHEMAS = {"memory": Memory, "rater": Rater, "stopping": Stopping, "world": World, "simulate": SimulateConfig}
SCHEMAS |= {f"backend/{name}": schema for name, schema in BACKENDS.items()}
SCHEMAS |= {f"embedder/{name}": schema for name, schema in EMBEDDERS.items()}
