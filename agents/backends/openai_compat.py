"""`openai.AsyncOpenAI` against any OpenAI-compatible base URL (OpenAI, vLLM, llama.cpp server, Ollama).

The API key is read from the environment variable named in config and handed only to the client; it never appears in
this object's repr, in errors (they are redacted) or in logs. The client's own retries are off: the Retry wrapper does
that, with accounting.

HTTP transport (`backend.http_client`): `aiohttp` (default; the SDK's `DefaultAioHttpClient`, `openai[aiohttp]`) costs
about 1.4 ms of client CPU per call at hundreds in flight; `httpx` (the SDK's default transport) costs several times
more there, so it is used as a round-robin pool of clients of 64 connections each.
"""

from __future__ import annotations

import contextlib
import email.utils
import itertools
import os
import time
from collections.abc import Sequence
from typing import Any

import httpx
import openai

from agents.backends.base import ChatBackend, Completion, Message, Sampling
from agents.backends.endpoint_pool import EndpointDown, public_url
from agents.backends.errors import PermanentError, TransientError, redact
from agents.backends.wrapper import PerLoop
from conf.errors import UserError

_PLACEHOLDER_KEY = "sk-no-key-needed"  # local servers (llama.cpp, vLLM) accept any key


def api_key_from_env(variable: str, base_url: str | None) -> str:
    """The key in `$variable`; a placeholder for a custom base URL (local servers need none); else a UserError."""
    key = os.environ.get(variable or "")
    if key:
        return key
    if base_url:
        return _PLACEHOLDER_KEY
    raise UserError(
        f"environment variable {variable or '(none)'} holding the API key is not set; "
        f"export it, or set backend.api_key_env to the variable that holds your key"
    )


def retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` / `Retry-After` (seconds or an HTTP date), or None."""
    if headers is None:
        return None
    with contextlib.suppress(TypeError, ValueError):  # absent, empty or not a number
        return float(headers.get("retry-after-ms")) / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:  # an HTTP date (parsedate_to_datetime raises ValueError for anything else)
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())


def map_openai_error(error: Exception, where: str, key: str | None, key_env: str) -> Exception:
    """Translate an openai exception into TransientError / PermanentError / UserError (key redacted)."""
    message = redact(f"{type(error).__name__}: {error}", key)[:300]
    if isinstance(error, openai.APITimeoutError | openai.APIConnectionError):
        return TransientError(f"{where}: {message}")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status in (408, 409, 429) or status >= 500:
            return TransientError(f"{where}: {message}", retry_after(error.response.headers), status)
        if status in (401, 403):
            return UserError(f"{where} rejected the API key (HTTP {status}); check the key in ${key_env}")
        if status == 404:
            return UserError(f"{where} answered 404 ({message}); check backend.model and backend.base_url")
        return PermanentError(f"{where}: {message}", status)
    return error


def refused_connection(error: BaseException) -> bool:
    """Whether the connection was refused somewhere down the exception chain (the aiohttp transport reports a
    refusal as `APITimeoutError`, httpx as `APIConnectionError`; both keep the `ConnectionRefusedError`)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ConnectionRefusedError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


class OpenAIBackend(ChatBackend):
    """Chat completions (or plain completions with `api: completions`) through `openai.AsyncOpenAI`."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        api: str = "chat",
        timeout_s: float = 60.0,
        max_tokens_param: str = "max_tokens",
        connections: int = 64,
        http_client: str = "aiohttp",
        pooled: bool = False,
    ) -> None:
        """`pooled`: one endpoint of an EndpointPool (base_url a list): an unreachable endpoint raises EndpointDown
        (the pool benches it and decides when that is a setting to fix) and a dropped connection counts as one."""
        if api not in ("chat", "completions"):
            raise UserError(f"backend.api={api!r} is not supported; use chat or completions")
        if http_client not in ("aiohttp", "httpx"):
            raise UserError(f"backend.http_client={http_client!r} is not supported; use aiohttp or httpx")
        if http_client == "aiohttp" and not _has_aiohttp():
            raise UserError(
                "backend.http_client=aiohttp needs the aiohttp extra of openai; "
                "run pip install 'openai[aiohttp]' or set backend.http_client=httpx"
            )
        self.model = model
        self.base_url = base_url
        self.api = api
        self.max_tokens_param = max_tokens_param
        self._key_env = api_key_env
        key = api_key_from_env(api_key_env, base_url)
        self._redact_key = key if key != _PLACEHOLDER_KEY else None
        self._clients = PerLoop(lambda: _client_pool(key, base_url, timeout_s, connections, http_client))
        self._where = (public_url(base_url) if pooled else base_url) or "api.openai.com"
        self._pooled = pooled
        self._answered = False  # set by the first call that got an API reply

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, api={self.api!r})"

    def _body(self, sampling: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            self.max_tokens_param: sampling.max_tokens,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        return body

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON body through the client's generic `post`, the reply read as plain JSON (the SDK's typed request
        transform and response models cost ~1 ms of CPU per call); SDK errors mapped by `map_openai_error`."""
        client: openai.AsyncOpenAI = next(self._clients.get())
        try:
            response = await client.post(path, body=body, cast_to=object)
        except openai.OpenAIError as error:
            if refused_connection(error):
                raise self._unreachable("refused the connection (nothing listens there)", "start the server") from None
            if self._pooled and _dropped(error):
                raise EndpointDown(f"{self._where} dropped the connection ({type(error).__name__})") from None
            raise map_openai_error(error, self._where, self._redact_key, self._key_env) from None
        except ValueError as error:  # json.JSONDecodeError: a body labelled JSON that is not JSON (an HTML page)
            what = f"answered {path} with a body that is not JSON ({str(error)[:80]})"
            raise self._unreachable(
                what, "point base_url at an OpenAI-compatible API (it usually ends in /v1)"
            ) from None
        self._answered = True
        return response

    def _unreachable(self, what: str, fix: str) -> Exception:
        """Before the endpoint has answered once, a refused connection or a non-API reply is a setting to fix (a
        one-line UserError at the first call, not six backoffs); afterwards a transient fault (a server restarting).
        In a pool, always EndpointDown: the pool benches the endpoint and raises the UserError when none answers."""
        if self._pooled:
            return EndpointDown(f"{self._where} {what}")
        if self._answered:
            return TransientError(f"{self._where} {what}")
        return UserError(f"{self._where} {what}; {fix} or fix base_url (backend.base_url / embedder.base_url)")

    def _completion(self, response: dict, start: float, text: str = "", generated: bool = True, **extra: Any
                    ) -> Completion:  # fmt: skip
        """The call's Completion: the response's token usage (`generated=False`: a scoring or embedding call, whose
        completion tokens are not counted), the time since `start`, and `extra`."""
        usage = response.get("usage") or {}
        return Completion(text=text, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0) if generated else 0,
                          model=self.model, seconds=time.perf_counter() - start, extra=extra)  # fmt: skip

    async def _complete(
        self, messages: Sequence[Message], sampling: Sampling, suffix: str = "", **options: Any
    ) -> tuple[dict, dict, str]:
        """POST `messages` to `/chat/completions`, or rendered plain and followed by `suffix` to `/completions` (`api:
        completions`), with `options` added to the body: the response, its first choice and that choice's text."""
        body = self._body(sampling)
        if self.api == "chat":
            body["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
        else:
            body["prompt"] = render_plain_prompt(messages) + suffix
        body.update(options)
        response = await self._post("/chat/completions" if self.api == "chat" else "/completions", body)
        choice = _first_choice(response)  # it has checked that the response is a dict
        text = (choice.get("message") or {}).get("content") if self.api == "chat" else choice.get("text")
        return response, choice, text or ""

    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        """One chat (or plain) completion."""
        start = time.perf_counter()
        response, _, text = await self._complete(messages, sampling)
        return self._completion(response, start, text)

    async def top_logprobs(
        self, messages: Sequence[Message], sampling: Sampling, top_k: int = 20, candidates: Sequence[str] = ()
    ) -> Completion:
        """A short completion with `logprobs`/`top_logprobs` (chat) or `logprobs: k` (plain completions, where the
        prompt ends with `sampling.prefix`). An endpoint that returns none is a one-line UserError."""
        start = time.perf_counter()
        if self.api == "chat":
            response, choice, text = await self._complete(messages, sampling, logprobs=True, top_logprobs=top_k)
            content = (choice.get("logprobs") or {}).get("content") or []
            tokens = [str(item.get("token", "")) for item in content]
            tables = [{str(t.get("token", "")): float(t["logprob"]) for t in item.get("top_logprobs") or []}
                      for item in content]  # fmt: skip
        else:
            suffix = " " + sampling.prefix.strip() if sampling.prefix else ""
            response, choice, text = await self._complete(messages, sampling, suffix, logprobs=top_k)
            logprobs = choice.get("logprobs") or {}
            tokens = [str(t) for t in logprobs.get("tokens") or []]
            tables = [
                {str(k): float(v) for k, v in (table or {}).items()} for table in logprobs.get("top_logprobs") or []
            ]
        if not tokens or not any(tables):
            raise UserError(
                f"{self._where} returned no top_logprobs for model {self.model!r}; rater.mode=logprob needs an endpoint "
                "that returns them (vLLM, llama.cpp server, OpenAI chat models), or set rater.mode=generate"
            )
        return self._completion(response, start, text, tokens=tokens, top_logprobs=tables)

    async def answer_logprobs(self, messages: Sequence[Message], answer: str) -> Completion:
        """Prompt log-probabilities of `answer` through `/completions` with `echo` (the chat API cannot echo): the
        plain rendering of `messages`, a space, then the answer; the answer's tokens are those at or after the space
        (BPE tokenizers attach it to the answer's first word: `" Be"` starts at the space, not at `B`)."""
        start = time.perf_counter()
        prefix = render_plain_prompt(messages)
        body = {"model": self.model, "prompt": prefix + " " + answer, "echo": True, "logprobs": 1,
                self.max_tokens_param: 1, "temperature": 0.0}  # fmt: skip
        response = await self._post("/completions", body)
        logprobs = _first_choice(response).get("logprobs") or {}
        offsets, values = logprobs.get("text_offset") or [], logprobs.get("token_logprobs") or []
        end = len(prefix) + 1 + len(answer)
        picked = [v for o, v in zip(offsets, values, strict=False) if len(prefix) <= o < end and v is not None]
        if not picked and answer.strip():
            raise UserError(
                f"{self._where} did not echo prompt log-probabilities for model {self.model!r}; rater.mode=likelihood "
                "needs a completions endpoint that honours echo + logprobs (vLLM), hf_local, or rater.mode=logprob"
            )
        return self._completion(response, start, generated=False, token_logprobs=[float(v) for v in picked])

    async def embed(self, texts: Sequence[str]) -> Completion:
        """One `/v1/embeddings` request; vectors (list of lists) in `extra["vectors"]`."""
        start = time.perf_counter()
        response = await self._post("/embeddings", {"model": self.model, "input": list(texts)})
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, list) or not all(isinstance(d, dict) and "embedding" in d for d in data):
            raise PermanentError(f"the embeddings endpoint answered without data: {str(response)[:200]}")
        vectors = [d["embedding"] for d in sorted(data, key=lambda d: d.get("index", 0))]
        return self._completion(response, start, generated=False, vectors=vectors)

    async def aclose(self) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop / loop closed
            for client in self._clients.get().clients:
                await client.close()


class _ClientPool:
    """Round-robin over one or more AsyncOpenAI clients."""

    def __init__(self, clients: list[openai.AsyncOpenAI]) -> None:
        self.clients = clients
        self._next = itertools.cycle(clients)

    def __next__(self) -> openai.AsyncOpenAI:
        return next(self._next)


def _dropped(error: Exception) -> bool:
    """A connection that failed or broke (not a timeout, not an HTTP status): the endpoint is unreachable."""
    return isinstance(error, openai.APIConnectionError) and not isinstance(error, openai.APITimeoutError)


def _has_aiohttp() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return hasattr(openai, "DefaultAioHttpClient")


def _client_pool(
    key: str, base_url: str | None, timeout_s: float, connections: int, http_client: str, per_httpx_client: int = 64
) -> _ClientPool:
    """Clients for `connections` calls in flight: one over aiohttp, or httpx clients of `per_httpx_client`
    connections each (one httpx pool of hundreds of connections spends milliseconds of CPU per request scanning it)."""
    if http_client == "aiohttp":
        sizes = [connections]
        transport = openai.DefaultAioHttpClient
    else:
        sizes = [per_httpx_client] * max(1, -(-connections // per_httpx_client))
        transport = openai.DefaultAsyncHttpxClient
    return _ClientPool([
        openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=timeout_s,
                           http_client=transport(limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                                                 timeout=timeout_s))
        for size in sizes
    ])  # fmt: skip


def _first_choice(response: Any) -> dict[str, Any]:
    """The first choice of a completion response, or a PermanentError for a reply that is not one."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise PermanentError(f"the endpoint answered without choices: {str(response)[:200]}")
    return choices[0]


def render_plain_prompt(messages: Sequence[Message]) -> str:
    """Messages as one plain prompt for completion-only (base) models: the contents, then an answer cue."""
    parts = [("Answer: " if m.get("role") == "assistant" else "") + m["content"] for m in messages]
    return "\n\n".join(parts) + "\n\nAnswer:"
