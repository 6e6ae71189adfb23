"""The one async interface every backend and wrapper implements: chat messages in, text + token usage out."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass, field, fields

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class Sampling:
    """Per-request sampling settings (reference: temperature 1.0, max_tokens 256)."""

    temperature: float = 1.0
    max_tokens: int = 256
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # The reply is made to begin with this text (hf_local continues it; its reply text starts with it). Small local
    # models that ignore a rating format write a parseable rating when the reply starts "Rating:". Others ignore it.
    prefix: str = ""


@dataclass
class Completion:
    """One finished call: the text and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    seconds: float = 0.0
    calls: int = 1  # backend calls spent, re-asks and retries included
    retries: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class Usage:
    """What a piece of work cost; adds up across calls (an interaction's `usage` in the episode record)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    retries: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @classmethod
    def of(cls, completion: Completion) -> Usage:
        return cls(*(getattr(completion, f.name) for f in fields(cls)))

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "seconds": round(self.seconds, 4)}


class ChatBackend(abc.ABC):
    """An async chat model. Wrappers (throttle, retry, usage) are ChatBackends that hold an `inner` one.

    Two optional capabilities serve the probability raters (agents.raters); a backend without them raises a UserError
    that names the setting to change:
    - `top_logprobs`: generate a few tokens and return, per generated position, the top-k log-probabilities
      (`extra["tokens"]`: the generated tokens, `extra["top_logprobs"]`: one {token text: logprob} per position);
    - `answer_logprobs`: the log-probability of each token of `answer` as the assistant's reply to `messages`
      (`extra["token_logprobs"]`), without generating anything.
    """

    model: str = ""

    @abc.abstractmethod
    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        """Answer one conversation."""

    async def top_logprobs(
        self, messages: Sequence[Message], sampling: Sampling, top_k: int = 20, candidates: Sequence[str] = ()
    ) -> Completion:
        """Generate up to `sampling.max_tokens` tokens with the top-k log-probabilities of each position.

        `candidates`: token texts whose log-probability a backend that sees the whole distribution adds to each
        position even outside the top k (hf_local does; endpoints return only their top k)."""
        raise self.unsupported("top_logprobs", "rater.mode=logprob")

    async def answer_logprobs(self, messages: Sequence[Message], answer: str) -> Completion:
        """Log-probabilities of the tokens of `answer` as the reply to `messages`."""
        raise self.unsupported("answer_logprobs", "rater.mode=likelihood")

    def unsupported(self, capability: str, setting: str) -> Exception:
        from conf.errors import UserError

        return UserError(
            f"{setting} needs token log-probabilities ({capability}), which backend {type(self).__name__} "
            f"(model {self.model!r}) does not give; use a backend that does (hf_local, or an OpenAI-compatible "
            f"endpoint with logprobs) or set rater.mode=generate"
        )

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections, threads or models."""
