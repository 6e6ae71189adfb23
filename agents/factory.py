"""Config node → backend with its wrapper stack; one shared instance per distinct node.

Stack, outermost first: usage accounting → retry → concurrency cap → RPM/TPM throttle → timeout → backend.
Every attempt (retries included) passes the cap, the throttle and the timeout; backoff sleeps hold no slot.

A list of `base_url` (openai backends and embedders) builds an EndpointPool of one OpenAIBackend per URL, each behind
its own timeout: with `limits.scope: global` the cap and throttle sit above the pool (they bind the whole pool); with
`per_endpoint` each endpoint gets its own throttle and the pool caps each endpoint at `limits.concurrency` in flight.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agents.backends.base import ChatBackend, Sampling
from agents.backends.concurrency import ConcurrencyCap
from agents.backends.endpoint_pool import EndpointPool
from agents.backends.retry import Retry
from agents.backends.throttle import Throttle
from agents.backends.timeout import Timeout
from agents.backends.usage import UsageAccounting, UsageMeter
from conf.errors import UserError

BACKENDS = ("hf_local", "openai", "langchain")
_CACHE: dict[str, ChatBackend] = {}
_EMBEDDERS: dict[str, Any] = {}
_LIMIT_KEYS = {
    "concurrency", "rpm", "tpm", "timeout_s", "max_retries", "backoff_base_s", "backoff_max_s", "retry_after_max_s",
    "scope", "cooldown_s", "bench_after",  # endpoint pools (a list of base_url); ignored for one endpoint
}  # fmt: skip
SCOPES = {"global": {"timeout_s"}, "per_endpoint": {"timeout_s", "concurrency", "rpm", "tpm"}}  # limits per endpoint


def _plain(node: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return json.loads(json.dumps(dict(node), default=str))


def _key(cfg: dict[str, Any]) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)


def sampling_from(node: DictConfig | Mapping[str, Any] | None) -> Sampling:
    """A `Sampling` from a node's `sampling` section (or from a sampling node itself)."""
    cfg = _plain(node) if node is not None else {}
    cfg = cfg.get("sampling", cfg) or {}
    allowed = {"temperature", "max_tokens", "top_p", "stop", "seed", "prefix"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise UserError(f"unknown sampling key(s) {unknown}; use {sorted(allowed)}")
    if "stop" in cfg:
        cfg["stop"] = tuple(cfg["stop"] or ())
    sampling = Sampling(**cfg)
    if sampling.temperature < 0 or sampling.max_tokens < 1:
        raise UserError(f"sampling {sampling} is invalid; temperature must be >= 0 and max_tokens >= 1")
    return sampling


def _positive(limits: dict[str, Any], name: str) -> float | None:
    value = limits.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or value <= 0:
        raise UserError(f"backend.limits.{name}={value!r} must be a positive number (or null for no limit)")
    return value


def _near(backend: ChatBackend, limits: dict[str, Any]) -> ChatBackend:
    """The innermost layers: timeout, then the RPM/TPM throttle (each only when configured)."""
    if (timeout := _positive(limits, "timeout_s")) is not None:
        backend = Timeout(backend, float(timeout))
    rpm, tpm = _positive(limits, "rpm"), _positive(limits, "tpm")
    if rpm or tpm:
        backend = Throttle(backend, int(rpm) if rpm else None, int(tpm) if tpm else None)
    return backend


def stack(raw: ChatBackend, limits: dict[str, Any], meter: UsageMeter) -> UsageAccounting:
    """Wrap `raw` in the standard layers configured by `limits` (missing or null = layer off)."""
    unknown = sorted(set(limits) - _LIMIT_KEYS)
    if unknown:
        raise UserError(f"unknown backend.limits key(s) {unknown}; use {sorted(_LIMIT_KEYS)}")
    backend = _near(raw, limits)
    if (concurrency := _positive(limits, "concurrency")) is not None:
        backend = ConcurrencyCap(backend, int(concurrency))
    retries = limits.get("max_retries", 0) or 0
    if not isinstance(retries, int) or retries < 0:
        raise UserError(f"backend.limits.max_retries={retries!r} must be an integer >= 0")
    backend = Retry(
        backend,
        max_retries=retries,
        backoff_base_s=float(_positive(limits, "backoff_base_s") or 1.0),
        backoff_max_s=float(_positive(limits, "backoff_max_s") or 60.0),
        retry_after_max_s=float(_positive(limits, "retry_after_max_s") or 120.0),
    )
    return UsageAccounting(backend, meter)


def _openai(cfg: dict[str, Any], connections: int, **options: Any) -> tuple[ChatBackend, dict[str, Any]]:
    """An OpenAIBackend, or an EndpointPool of them for a list of `base_url`; with the limits left for `stack`."""
    from agents.backends.openai_compat import OpenAIBackend

    _require_model(cfg)
    limits = dict(cfg.get("limits") or {})
    urls = cfg.get("base_url")
    common = dict(model=cfg["model"], api_key_env=cfg.get("api_key_env", "OPENAI_API_KEY"),
                  timeout_s=float(limits.get("timeout_s") or 600.0) + 5.0,
                  connections=int(limits.get("concurrency") or connections),
                  http_client=cfg.get("http_client", "aiohttp"), **options)  # fmt: skip
    if not isinstance(urls, list) or len(urls) == 1:
        return OpenAIBackend(base_url=urls[0] if isinstance(urls, list) else urls, **common), limits
    scope = limits.get("scope") or "global"
    if scope not in SCOPES:
        raise UserError(f"backend.limits.scope={scope!r} is not one of {sorted(SCOPES)}; use global or per_endpoint")
    near = {k: v for k, v in limits.items() if k in SCOPES[scope]}
    endpoints = [_near(OpenAIBackend(base_url=url, pooled=True, **common), near) for url in _urls(urls)]
    bench_after = 2 if limits.get("bench_after") is None else limits["bench_after"]
    if not isinstance(bench_after, int) or bench_after < 1:
        raise UserError(f"backend.limits.bench_after={bench_after!r} must be an integer >= 1")
    capacity = int(near["concurrency"]) if near.get("concurrency") else None
    pool = EndpointPool(endpoints, urls, capacity, float(_positive(limits, "cooldown_s") or 10.0), bench_after)
    return pool, {k: v for k, v in limits.items() if k not in near}


def _urls(urls: list[Any]) -> list[str]:
    """A base_url list checked: non-empty strings, each once."""
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise UserError(
            f"base_url={urls!r} must be one URL or a list of URLs (e.g. [http://h1:8000/v1,http://h2:8000/v1])"
        )
    twice = sorted({u for u in urls if urls.count(u) > 1})
    if twice:
        raise UserError(f"base_url lists {twice[0]} more than once; list each endpoint once")
    return urls


def _raw_backend(cfg: dict[str, Any]) -> tuple[ChatBackend, dict[str, Any]]:
    """The unwrapped backend of a node, and the limits `stack` applies around it."""
    name = cfg["name"]
    if name == "hf_local":
        from agents.backends.hf_local import HFLocalBackend

        hf = HFLocalBackend(
            model=cfg.get("model", "embedded:smollm2"),
            device=cfg.get("device", "auto"),
            dtype=cfg.get("dtype", "auto"),
            max_batch_size=int(cfg.get("max_batch_size", 16)),
            max_wait_ms=float(cfg.get("max_wait_ms", 10)),
        )
        return hf, dict(cfg.get("limits") or {})
    if name == "openai":
        return _openai(cfg, 256, api=cfg.get("api", "chat"), extra_body=cfg.get("extra_body"),
                       max_tokens_param=cfg.get("max_tokens_param", "max_tokens"))  # fmt: skip
    from agents.backends.langchain import LangChainBackend
    from agents.backends.openai_compat import _PLACEHOLDER_KEY, api_key_from_env

    chat_model = dict(cfg.get("chat_model") or {})
    if "_target_" not in chat_model:
        raise UserError("backend.chat_model._target_ is missing; set it to e.g. langchain_openai.ChatOpenAI")
    secret = None
    if cfg.get("api_key_env"):
        secret = api_key_from_env(cfg["api_key_env"], cfg.get("base_url") or chat_model.get("base_url"))
        chat_model.setdefault("api_key", secret)
        secret = None if secret == _PLACEHOLDER_KEY else secret
    from hydra.utils import instantiate

    try:
        built = instantiate(chat_model)
    except Exception as error:  # noqa: BLE001 - any construction failure is a config problem
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if secret:
            message = message.replace(secret, "***")
        raise UserError(f"cannot build backend.chat_model ({message}); check backend.chat_model") from None
    chain = LangChainBackend(
        built,
        model=cfg.get("model", ""),
        pass_sampling=cfg.get("pass_sampling", True),
        secret=secret,
        max_tokens_param=cfg.get("max_tokens_param", "max_tokens"),
    )
    return chain, dict(cfg.get("limits") or {})


def _require_model(cfg: dict[str, Any]) -> None:
    if not cfg.get("model"):
        raise UserError(f"backend.model is not set for backend {cfg['name']}; pass backend.model=NAME")


def _refuse_budget(cfg: dict[str, Any], group: str) -> None:
    """`budget` in a backend or embedder node was removed (a backend no longer refuses calls): it may only be left
    empty, as in a config saved by an earlier version; a value fails naming the run's one budget."""
    budget = cfg.get("budget")
    if budget is not None and (not isinstance(budget, dict) or any(v is not None for v in budget.values())):
        raise UserError(f"{group}.budget was removed; use sa-simulate's stopping.budget.max_calls, max_tokens or "
                        "max_cost (USD): one budget for all of a world's backends together")  # fmt: skip


def _meter(cfg: dict[str, Any], model: str) -> UsageMeter:
    return UsageMeter(model=model, prices=cfg.get("prices") or {})


def build_backend(node: DictConfig | Mapping[str, Any]) -> ChatBackend:
    """The backend (wrapped) for one `conf/backend/*.yaml` node; the same node content gives the same object."""
    cfg = _plain(node)
    name = cfg.get("name")
    if name not in BACKENDS:
        raise UserError(f"backend.name={name!r} is not one of {', '.join(BACKENDS)}; choose with backend=openai etc.")
    _refuse_budget(cfg, "backend")
    key = _key(cfg)
    if key not in _CACHE:
        raw, limits = _raw_backend(cfg)
        _CACHE[key] = stack(raw, limits, _meter(cfg, raw.model))
    return _CACHE[key]


def build_embedder(node: DictConfig | Mapping[str, Any]) -> Any:
    """An OpenAI-compatible embedder (`conf/embedder/openai.yaml`, `name: openai`); cached like backends."""
    cfg = _plain(node)
    if cfg.get("name") != "openai":
        raise UserError(f"embedder.name={cfg.get('name')!r} is not built here; agents builds name=openai only")
    _refuse_budget(cfg, "embedder")
    key = _key(cfg)
    if key not in _EMBEDDERS:
        from agents.backends.openai_embed import OpenAIEmbedder

        raw, limits = _openai(cfg, 64)
        wrapped = stack(raw, limits, _meter(cfg, raw.model))
        _EMBEDDERS[key] = OpenAIEmbedder(wrapped, dim=cfg.get("dim"), batch_size=int(cfg.get("batch_size", 64)))
    return _EMBEDDERS[key]


def meter_of(backend: Any) -> UsageMeter | None:
    """The usage meter of a backend (or embedder) built here."""
    backend = getattr(backend, "backend", backend)
    layer = backend.find(UsageAccounting) if hasattr(backend, "find") else None
    return layer.meter if layer is not None else None


def pool_of(backend: Any) -> EndpointPool | None:
    """The endpoint pool of a backend (or embedder) built here, if its base_url is a list."""
    backend = getattr(backend, "backend", backend)
    return backend.find(EndpointPool) if hasattr(backend, "find") else None


def usage_report() -> list[dict[str, Any]]:
    """Usage of every backend and embedder built in this process (for metrics.json); a pool's entry adds
    `endpoints`: per endpoint (URL without credentials or query) calls, failures, times benched and latency."""
    report = []
    for built in list(_CACHE.values()) + list(_EMBEDDERS.values()):
        meter, pool = meter_of(built), pool_of(built)
        if meter is not None:
            report.append({**meter.to_dict(), **({"endpoints": pool.report()} if pool is not None else {})})
    return report


async def close_all() -> None:
    """Close every backend built here and forget them (call at the end of a run)."""
    for backend in list(_CACHE.values()) + list(_EMBEDDERS.values()):
        await backend.aclose()
    _CACHE.clear()
    _EMBEDDERS.clear()
