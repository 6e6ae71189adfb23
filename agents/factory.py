"""Config node → backend with its wrapper stack; one shared instance per distinct node.

Stack, outermost first: usage accounting → retry → concurrency cap → RPM/TPM throttle → timeout → backend.
Every attempt (retries included) passes the cap, the throttle and the timeout; backoff sleeps hold no slot.

A list of `base_url` (openai backends and embedders) builds an EndpointPool of one OpenAIBackend per URL, each behind
its own timeout: with `limits.scope: global` the cap and throttle sit above the pool (they bind the whole pool); with
`per_endpoint` each endpoint gets its own throttle and the pool caps each endpoint at `limits.concurrency` in flight.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

import conf.schema.world as schema
from agents.backends.base import ChatBackend, Sampling
from agents.backends.endpoint_pool import EndpointPool
from agents.backends.retry import Retry, Timeout
from agents.backends.throttle import ConcurrencyCap, Throttle
from agents.backends.usage import UsageAccounting, UsageMeter
from agents.raters import RaterSettings
from conf.errors import UserError

_CACHE: dict[str, ChatBackend] = {}
_EMBEDDERS: dict[str, Any] = {}
PER_ENDPOINT = {"global": ("timeout_s",), "per_endpoint": ("timeout_s", "concurrency", "rpm", "tpm")}  # by scope


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
    if unknown := sorted(set(cfg) - allowed):
        raise UserError(f"unknown sampling key(s) {unknown}; use {sorted(allowed)}")
    if "stop" in cfg:
        cfg["stop"] = tuple(cfg["stop"] or ())
    sampling = Sampling(**cfg)
    schema.Sampling(sampling.temperature, sampling.max_tokens, sampling.top_p).check("sampling")
    return sampling


def merged_sampling(node: DictConfig | Mapping[str, Any], *overrides: Any) -> Sampling:
    """The backend node's `sampling` (a partial node may have none), with each override's non-null values on top
    (sa-simulate's agent.sampling, agent.rating_sampling and observer.sampling; sa-eval's rater_check.sampling)."""
    merged = _plain(node.get("sampling") or {})
    for override in filter(None, overrides):
        merged.update({key: value for key, value in _plain(override).items() if value is not None})
    return sampling_from(merged)


def rater_settings(cfg: DictConfig, role: str) -> RaterSettings:
    """`RaterSettings` from the `rater` group with `<role>.max_reasks` (`agent`, `observer`, sa-eval's
    `rater_check`); the observer's `rater_mode`, when set, overrides the mode."""
    node = _plain(cfg.rater)
    if role == "observer" and cfg.observer.rater_mode:
        node["mode"] = cfg.observer.rater_mode
    return RaterSettings(max_reasks=cfg[role].max_reasks, **node)


def full_limits(limits: Any) -> schema.PoolLimits:
    """Any `limits` node (a mapping or a schema instance) with every layer's setting: missing = the layer off."""
    data = dataclasses.asdict(limits) if dataclasses.is_dataclass(limits) else dict(limits or {})
    typed = schema.typed(schema.PoolLimits, data, "backend.limits")
    typed.check("backend.limits")
    return typed


def _near(backend: ChatBackend, limits: schema.PoolLimits) -> ChatBackend:
    """The innermost layers: timeout, then the RPM/TPM throttle (each only when configured)."""
    if limits.timeout_s is not None:
        backend = Timeout(backend, float(limits.timeout_s))
    if limits.rpm or limits.tpm:
        backend = Throttle(backend, int(limits.rpm) if limits.rpm else None, int(limits.tpm) if limits.tpm else None)
    return backend


def stack(raw: ChatBackend, limits: Any, meter: UsageMeter) -> UsageAccounting:
    """Wrap `raw` in the standard layers configured by `limits` (missing or null = layer off)."""
    limits = full_limits(limits)
    backend = _near(raw, limits)
    if limits.concurrency is not None:
        backend = ConcurrencyCap(backend, int(limits.concurrency))
    backend = Retry(backend, max_retries=limits.max_retries, backoff_base_s=float(limits.backoff_base_s),
                    backoff_max_s=float(limits.backoff_max_s), retry_after_max_s=float(limits.retry_after_max_s))  # fmt: skip
    return UsageAccounting(backend, meter)


def _openai(node: Any, connections: int, **options: Any) -> tuple[ChatBackend, schema.PoolLimits]:
    """An OpenAIBackend, or an EndpointPool of them for a list of `base_url`; with the limits left for `stack`."""
    from agents.backends.openai_compat import OpenAIBackend

    limits, urls = full_limits(node.limits), node.base_url
    common = dict(model=node.model, api_key_env=node.api_key_env, timeout_s=float(limits.timeout_s or 600.0) + 5.0,
                  connections=int(limits.concurrency or connections), http_client=node.http_client, **options)  # fmt: skip
    if not isinstance(urls, list) or len(urls) == 1:
        return OpenAIBackend(base_url=urls[0] if isinstance(urls, list) else urls, **common), limits
    near = {k: getattr(limits, k) for k in PER_ENDPOINT[limits.scope]}
    each = schema.PoolLimits(**near)
    endpoints = [_near(OpenAIBackend(base_url=url, pooled=True, **common), each) for url in urls]
    pool = EndpointPool(endpoints, urls, each.concurrency, float(limits.cooldown_s), limits.bench_after)
    return pool, dataclasses.replace(limits, **dict.fromkeys(near))


def _raw_backend(node: Any) -> tuple[ChatBackend, Any]:
    """The unwrapped backend of a typed node, and the limits `stack` applies around it."""
    if node.name == "hf_local":
        from agents.backends.hf_local import HFLocalBackend

        hf = HFLocalBackend(model=node.model, device=node.device, dtype=node.dtype,
                            max_batch_size=node.max_batch_size, max_wait_ms=float(node.max_wait_ms))  # fmt: skip
        return hf, node.limits
    if node.name == "openai":
        return _openai(node, 256, api=node.api, max_tokens_param=node.max_tokens_param)
    from agents.backends.langchain import LangChainBackend
    from agents.backends.openai_compat import _PLACEHOLDER_KEY, api_key_from_env

    chat_model = dict(node.chat_model)
    secret = None
    if node.api_key_env:
        secret = api_key_from_env(node.api_key_env, node.base_url or chat_model.get("base_url"))
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
    chain = LangChainBackend(built, model=node.model, pass_sampling=node.pass_sampling, secret=secret,
                             max_tokens_param=node.max_tokens_param)  # fmt: skip
    return chain, node.limits


def build_backend(node: DictConfig | Mapping[str, Any]) -> ChatBackend:
    """The backend (wrapped) for one `conf/backend/*.yaml` node (typed by conf.schema.world, so a partial mapping
    gets the schema's defaults); the same node content gives the same object."""
    cfg = _plain(node)
    key = _key(cfg)
    if key not in _CACHE:
        typed = schema.backend_node(cfg, "backend")
        raw, limits = _raw_backend(typed)
        _CACHE[key] = stack(raw, limits, UsageMeter(model=raw.model, prices=typed.prices))
    return _CACHE[key]


def build_embedder(node: DictConfig | Mapping[str, Any]) -> Any:
    """An OpenAI-compatible embedder (`conf/embedder/openai.yaml`, `name: openai`); cached like backends."""
    cfg = _plain(node)
    if cfg.get("name") != "openai":
        raise UserError(f"embedder.name={cfg.get('name')!r} is not built here; agents builds name=openai only")
    key = _key(cfg)
    if key not in _EMBEDDERS:
        from agents.backends.openai_embed import OpenAIEmbedder

        typed = schema.embedder_node(cfg, "embedder")
        raw, limits = _openai(typed, 64)
        wrapped = stack(raw, limits, UsageMeter(model=raw.model, prices=typed.prices))
        _EMBEDDERS[key] = OpenAIEmbedder(wrapped, dim=typed.dim, batch_size=typed.batch_size)
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
