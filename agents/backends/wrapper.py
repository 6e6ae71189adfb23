"""Base class of the stackable wrappers: a ChatBackend around an `inner` one, with one hook, `around`."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.backends.base import ChatBackend, Completion, Message, Sampling

Call = Callable[[], Awaitable[Completion]]


def estimate_tokens(messages: Sequence[Message], sampling: Sampling | None = None) -> int:
    """Rough token count before a call (~4 characters a token) plus the completion allowance."""
    chars = sum(len(m.get("content", "")) for m in messages)
    return chars // 4 + 4 * len(messages) + (sampling.max_tokens if sampling else 0)


class Forward(ChatBackend):
    """Sends every chat, log-probability and embedding call through `send(call, tokens)`: `call` takes the backend to
    ask, `tokens` is the call's estimated size. A wrapper asks its `inner` one, an endpoint pool the one it picks."""

    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        return await self.send(lambda layer: layer.chat(messages, sampling), estimate_tokens(messages, sampling))

    async def top_logprobs(
        self, messages: Sequence[Message], sampling: Sampling, top_k: int = 20, candidates: Sequence[str] = ()
    ) -> Completion:
        return await self.send(
            lambda layer: layer.top_logprobs(messages, sampling, top_k, candidates), estimate_tokens(messages, sampling)
        )

    async def answer_logprobs(self, messages: Sequence[Message], answer: str) -> Completion:
        return await self.send(
            lambda layer: layer.answer_logprobs(messages, answer), estimate_tokens(messages) + len(answer) // 4
        )

    async def embed(self, texts: Sequence[str]) -> Completion:
        """Embedding calls (OpenAI-compatible embedders) go through the same stack; vectors in `extra["vectors"]`."""
        return await self.send(lambda layer: layer.embed(texts), sum(len(t) for t in texts) // 4 + len(texts))

    @abc.abstractmethod
    def send(self, call: Callable[[ChatBackend], Awaitable[Completion]], tokens: int) -> Awaitable[Completion]:
        """`call(backend)` on the backend this layer picks."""


class Wrapper(Forward):
    """A layer around one `inner` backend; subclasses override `around(call, tokens)`, `call` asking `inner`."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner = inner
        self.model = inner.model

    def send(self, call: Callable[[ChatBackend], Awaitable[Completion]], tokens: int) -> Awaitable[Completion]:
        inner = self.inner  # a Forward layer takes the call as it is (its own chat would only build it again)
        return self.around(lambda: inner.send(call, tokens) if isinstance(inner, Forward) else call(inner), tokens)

    async def around(self, call: Call, tokens: int) -> Completion:
        return await call()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def find(self, kind: type) -> Any:
        """The first layer of type `kind` in this stack (e.g. the UsageMeter's wrapper), or None."""
        layer: Any = self
        while layer is not None:
            if isinstance(layer, kind):
                return layer
            layer = getattr(layer, "inner", None)
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


class PerLoop:
    """Lazily builds one object per running event loop (semaphores, clients and queues are bound to a loop)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._loop: asyncio.AbstractEventLoop | None = None
        self._value: Any = None

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._value = loop, self._build()
        return self._value
