"""Config node → backend with its wrapper stack; one shared instance per distinct node.

Stack, outermost first: usage accounting (budget) → retry → concurrency cap → RPM/TPM throttle → timeout → backend.
Every attempt (retries included) passes the cap, the throttle and the timeout; backoff sleeps hold no slot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agents.backends.base import ChatBackend, Sampling
from agents.backends.concurrency import ConcurrencyCap
from agents.backends.retry import Retry
from agents.backends.throttle import Throttle
from agents.backends.timeout import Timeout
from agents.backends.usage import Budget, UsageAccounting, UsageMeter
from conf.cli import UserError

BACKENDS = ("hf_local", "openai", "langchain")
_CACHE: dict[str, ChatBackend] = {}
_EMBEDDERS: dict[str, Any] = {}
_LIMIT_KEYS = {
    "concurrency", "rpm", "tpm", "timeout_s", "max_retries", "backoff_base_s", "backoff_max_s", "retry_after_max_s",
}  # fmt: skip


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


def stack(raw: ChatBackend, limits: dict[str, Any], meter: UsageMeter) -> UsageAccounting:
    """Wrap `raw` in the standard layers configured by `limits` (missing or null = layer off)."""
    unknown = sorted(set(limits) - _LIMIT_KEYS)
    if unknown:
        raise UserError(f"unknown backend.limits key(s) {unknown}; use {sorted(_LIMIT_KEYS)}")
    backend: ChatBackend = raw
    if (timeout := _positive(limits, "timeout_s")) is not None:
        backend = Timeout(backend, float(timeout))
    rpm, tpm = _positive(limits, "rpm"), _positive(limits, "tpm")
    if rpm or tpm:
        backend = Throttle(backend, int(rpm) if rpm else None, int(tpm) if tpm else None)
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


def _raw_backend(cfg: dict[str, Any]) -> ChatBackend:
    name = cfg["name"]
    if name == "hf_local":
        from agents.backends.hf_local import HFLocalBackend

        return HFLocalBackend(
            model=cfg.get("model", "embedded:smollm2"),
            device=cfg.get("device", "auto"),
            dtype=cfg.get("dtype", "auto"),
            max_batch_size=int(cfg.get("max_batch_size", 16)),
            max_wait_ms=float(cfg.get("max_wait_ms", 10)),
        )
    if name == "openai":
        from agents.backends.openai_compat import OpenAIBackend

        _require_model(cfg)
        return OpenAIBackend(
            model=cfg["model"],
            base_url=cfg.get("base_url"),
            api_key_env=cfg.get("api_key_env", "OPENAI_API_KEY"),
            api=cfg.get("api", "chat"),
            timeout_s=float((cfg.get("limits") or {}).get("timeout_s") or 600.0) + 5.0,
            max_tokens_param=cfg.get("max_tokens_param", "max_tokens"),
            extra_body=cfg.get("extra_body"),
            connections=int((cfg.get("limits") or {}).get("concurrency") or 256),
            http_client=cfg.get("http_client", "aiohttp"),
        )
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
    return LangChainBackend(
        built,
        model=cfg.get("model", ""),
        pass_sampling=cfg.get("pass_sampling", True),
        secret=secret,
        max_tokens_param=cfg.get("max_tokens_param", "max_tokens"),
    )


def _require_model(cfg: dict[str, Any]) -> None:
    if not cfg.get("model"):
        raise UserError(f"backend.model is not set for backend {cfg['name']}; pass backend.model=NAME")


def _meter(cfg: dict[str, Any], model: str) -> UsageMeter:
    budget = cfg.get("budget") or {}
    unknown = sorted(set(budget) - {"max_calls", "max_tokens", "max_cost_usd"})
    if unknown:
        raise UserError(f"unknown backend.budget key(s) {unknown}; use max_calls, max_tokens, max_cost_usd")
    return UsageMeter(model=model, prices=cfg.get("prices") or {}, budget=Budget(**budget))


def build_backend(node: DictConfig | Mapping[str, Any]) -> ChatBackend:
    """The backend (wrapped) for one `conf/backend/*.yaml` node; the same node content gives the same object."""
    cfg = _plain(node)
    name = cfg.get("name")
    if name not in BACKENDS:
        raise UserError(f"backend.name={name!r} is not one of {', '.join(BACKENDS)}; choose with backend=openai etc.")
    key = _key(cfg)
    if key not in _CACHE:
        raw = _raw_backend(cfg)
        _CACHE[key] = stack(raw, dict(cfg.get("limits") or {}), _meter(cfg, raw.model))
    return _CACHE[key]


def build_embedder(node: DictConfig | Mapping[str, Any]) -> Any:
    """An OpenAI-compatible embedder (`conf/embedder/openai.yaml`, `name: openai`); cached like backends."""
    cfg = _plain(node)
    if cfg.get("name") != "openai":
        raise UserError(f"embedder.name={cfg.get('name')!r} is not built here; agents builds name=openai only")
    key = _key(cfg)
    if key not in _EMBEDDERS:
        from agents.backends.openai_compat import OpenAIBackend
        from agents.backends.openai_embed import OpenAIEmbedder

        _require_model(cfg)
        raw = OpenAIBackend(
            model=cfg["model"],
            base_url=cfg.get("base_url"),
            api_key_env=cfg.get("api_key_env", "OPENAI_API_KEY"),
            timeout_s=float((cfg.get("limits") or {}).get("timeout_s") or 600.0) + 5.0,
            connections=int((cfg.get("limits") or {}).get("concurrency") or 64),
            http_client=cfg.get("http_client", "aiohttp"),
        )
        wrapped = stack(raw, dict(cfg.get("limits") or {}), _meter(cfg, raw.model))
        _EMBEDDERS[key] = OpenAIEmbedder(wrapped, dim=cfg.get("dim"), batch_size=int(cfg.get("batch_size", 64)))
    return _EMBEDDERS[key]


def meter_of(backend: Any) -> UsageMeter | None:
    """The usage meter of a backend (or embedder) built here."""
    backend = getattr(backend, "backend", backend)
    layer = backend.find(UsageAccounting) if hasattr(backend, "find") else None
    return layer.meter if layer is not None else None


def usage_report() -> list[dict[str, Any]]:
    """Usage of every backend and embedder built in this process (for metrics.json)."""
    built = list(_CACHE.values()) + list(_EMBEDDERS.values())
    return [m.to_dict() for m in (meter_of(b) for b in built) if m is not None]


async def close_all() -> None:
    """Close every backend built here and forget them (call at the end of a run)."""
    for backend in list(_CACHE.values()) + list(_EMBEDDERS.values()):
        await backend.aclose()
    _CACHE.clear()
    _EMBEDDERS.clear()
