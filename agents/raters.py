"""Rater modes: how a peer or the observer turns an answer into a rating on the 1..7 scale (`rater.mode`).

| mode         | one rating is                                                            | needs from the backend |
|--------------|--------------------------------------------------------------------------|------------------------|
| `generate`   | the verdict parsed from a generated reply (strict: `agents.ratings`)     | chat                   |
| `logprob`    | E[r] = Σ_v v·p(v) / Σ_v p(v), p over the scale's digit tokens at the     | top_logprobs           |
|              | rating position (G-Eval, arXiv 2303.16634); the distribution is kept     |                        |
| `likelihood` | 1 + (R−1)·σ(Δ/τ), Δ = mean log p(answer | follows the criteria)          | answer_logprobs        |
|              |                           − mean log p(answer | violates them)           |                        |

`generate` re-asks on an unreadable reply; the probability modes read numbers, never text, so a reply cannot inject a
rating into them. Where a generated text reason is wanted beside a probability rating (peers: it feeds the revision
and the self-critic data), `reasons=true` asks for one in a second short call that states the rating.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from agents import prompts
from agents.backends.base import ChatBackend, Message, Sampling, Usage
from agents.backends.errors import CallFailed
from agents.ratings import Rating, ask_rating, invalid
from agents.tasks import gather_or_cancel

MODES = ("generate", "logprob", "likelihood")
ASPECTS = ("alignment", "engagement")
_SCALE = range(prompts.SCALE_LOW, prompts.SCALE_HIGH + 1)  # the values a rating can take
_DIGITS = tuple(f"{space}{value}" for space in ("", " ") for value in _SCALE)  # their tokens (`5`, ` 5`), for logprob


@dataclass(frozen=True)
class RatingRequest:
    """What is rated: the answer to a question, on one aspect, by a rater with these memories as context."""

    question: str
    answer: str
    aspect: str = "alignment"  # alignment | engagement
    memories: Sequence[Any] = ()
    observer: bool = False  # the observer's prompt (a peer's otherwise)

    def messages(self, digit_only: bool = False) -> list[Message]:
        """The text prompt of a generate or logprob rater."""
        if self.observer:
            return prompts.observer_messages(self.aspect, self.question, self.answer, digit_only)
        return prompts.feedback_messages(self.question, self.answer, self.memories, digit_only)


@dataclass(frozen=True)
class RaterSettings:
    """`conf/rater/*.yaml`: the mode and its knobs (all modes share one node so a sweep can switch modes)."""

    mode: str = "generate"
    max_reasks: int = 2  # generate: re-asks of an unreadable reply
    top_k: int = 20  # logprob: top log-probabilities asked per position
    min_mass: float = 0.2  # logprob: least probability on the scale's digits for a readable rating
    temperature: float = 0.05  # likelihood: τ, nats per token of Δ that move the rating by about 1.5 at the centre
    reasons: bool = True  # logprob / likelihood peers: a short generated reason beside the number

    def __post_init__(self) -> None:
        from conf.errors import require

        require(self.mode in MODES, f"rater.mode={self.mode!r} must be one of {', '.join(MODES)}")
        require(isinstance(self.max_reasks, int) and self.max_reasks >= 0, f"rater.max_reasks={self.max_reasks!r} must be an integer >= 0")  # fmt: skip
        require(isinstance(self.top_k, int) and 1 <= self.top_k <= 20, f"rater.top_k={self.top_k!r} must be in 1..20 (OpenAI's cap)")  # fmt: skip
        require(0 <= self.min_mass <= 1, f"rater.min_mass={self.min_mass!r} must be in [0, 1]")
        require(self.temperature > 0, f"rater.temperature={self.temperature!r} must be > 0")


class Rater:
    """Rates answers with one backend in one mode; `rate(request) -> (Rating, Usage)`, never raising for an
    unreadable rating (a backend without the needed capability raises a one-line UserError)."""

    def __init__(self, backend: ChatBackend, settings: RaterSettings, sampling: Sampling = Sampling()) -> None:
        self.backend = backend
        self.settings = settings
        self.sampling = sampling

    @property
    def mode(self) -> str:
        return self.settings.mode

    async def rate(self, request: RatingRequest) -> tuple[Rating, Usage]:
        mode = self.settings.mode
        if mode == "generate":
            return await ask_rating(self.backend, request.messages(), self.sampling, self.settings.max_reasks)
        try:
            rating, usage = await (self._logprob if mode == "logprob" else self._likelihood)(request)
        except CallFailed as error:
            return invalid(f"call failed: {error.cause}", mode=mode), Usage()
        if rating.valid and self.settings.reasons and not request.observer:
            reason, cost = await self._reason(request, rating.value)
            rating, usage = replace(rating, reason=reason), usage + cost
        return rating, usage

    async def _logprob(self, request: RatingRequest) -> tuple[Rating, Usage]:
        sampling = replace(
            self.sampling, temperature=0.0, max_tokens=min(self.sampling.max_tokens, 4), prefix=prompts.RATING_PREFIX
        )
        messages = request.messages(digit_only=True)
        completion = await self.backend.top_logprobs(messages, sampling, self.settings.top_k, candidates=_DIGITS)
        tokens, tables = completion.extra.get("tokens") or [], completion.extra.get("top_logprobs") or []
        rating = rating_from_top_logprobs(tokens, tables, self.settings.min_mass)
        return replace(rating, raw=completion.text), Usage.of(completion)

    async def _likelihood(self, request: RatingRequest) -> tuple[Rating, Usage]:
        follows, violates = prompts.likelihood_messages(request.aspect, request.question, request.memories)
        good, bad = await gather_or_cancel(
            self.backend.answer_logprobs(follows, request.answer),
            self.backend.answer_logprobs(violates, request.answer),
        )
        usage = Usage.of(good) + Usage.of(bad)
        good_lp, bad_lp = good.extra.get("token_logprobs") or [], bad.extra.get("token_logprobs") or []
        if not good_lp or len(good_lp) != len(bad_lp):
            return invalid("the answer has no tokens to score", mode="likelihood"), usage
        return likelihood_rating(good_lp, bad_lp, self.settings.temperature), usage

    async def _reason(self, request: RatingRequest, value: float) -> tuple[str, Usage]:
        messages = prompts.reason_messages(request.question, request.answer, value)
        try:
            completion = await self.backend.chat(messages, replace(self.sampling, prefix=""))
        except CallFailed:
            return "", Usage()
        return completion.text.strip(), Usage.of(completion)


def _scale_digit(token: str) -> int | None:
    """The scale value a token stands for (`5`, ` 5`), or None (`²` and other non-ASCII digits are not ratings)."""
    text = token.strip()
    if len(text) == 1 and text.isascii() and text.isdigit() and int(text) in _SCALE:
        return int(text)
    return None


def _starts_a_list(tokens: Sequence[str], i: int) -> bool:
    """`1.` / `1)` followed by a criterion's name: the model is enumerating the criteria, not rating."""
    following = "".join(tokens[i + 1 : i + 4]).lower()
    rest = following[1:].strip()
    return following[:1] in ".)" and bool(following) and any(rest.startswith(n[:3]) for n in prompts.CRITERIA_NAMES)


def scale_distribution(table: dict[str, float]) -> dict[int, float]:
    """Probability of each scale value at one position, summing the token variants (`5`, ` 5`) of a digit."""
    probs = dict.fromkeys(_SCALE, 0.0)
    for token, logprob in table.items():
        if (value := _scale_digit(token)) is not None:
            probs[value] += math.exp(logprob)
    return probs


def rating_from_top_logprobs(tokens: Sequence[str], tables: Sequence[dict[str, float]], min_mass: float) -> Rating:
    """The expected rating at the rating position: the first generated token that is a scale digit (not the start of
    a longer number such as `10` or `1.5`), else the first position where the digits hold most of the top mass (or
    the only position, read after a prefix); unreadable when the digits there hold less than `min_mass`."""
    position = None
    for i, token in enumerate(tokens):
        if _scale_digit(token) is None:
            continue
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if following[:1].isdigit() or (following.startswith(".") and following[1:2].isdigit()):
            return invalid(f"the rating is a number of several tokens ({token.strip()}{following}...)", mode="logprob")
        if _starts_a_list(tokens, i):
            return invalid(
                f"{token.strip()}{''.join(tokens[i + 1 : i + 3])} starts a list, not a rating", mode="logprob"
            )
        position = i
        break
    if position is None:
        position = next((i for i, t in enumerate(tables) if sum(scale_distribution(t).values()) >= 0.5), None)
    if position is None and len(tables) == 1:  # one position read after a prefix (hf_local): the rating is there
        position = 0
    if position is None or position >= len(tables):
        return invalid("no rating digit at any position of the reply's top log-probabilities", mode="logprob")
    probs = scale_distribution(tables[position])
    mass = sum(probs.values())
    if mass < max(min_mass, 1e-12):
        return invalid(f"only {mass:.2f} of the probability is on the scale's digits", mode="logprob")
    value = sum(v * p for v, p in probs.items()) / mass
    distribution = {str(v): round(p / mass, 4) for v, p in probs.items()}
    detail = {"distribution": distribution, "mass": round(mass, 4), "position": position}
    return Rating(round(value, 4), "", True, mode="logprob", detail=detail)


def likelihood_rating(follows: Sequence[float], violates: Sequence[float], temperature: float) -> Rating:
    """1 + (R−1)·σ(Δ/τ) with Δ the mean per-token log-likelihood ratio of the answer (follows − violates)."""
    delta = sum(follows) / len(follows) - sum(violates) / len(violates)
    low, high = prompts.SCALE_LOW, prompts.SCALE_HIGH
    value = low + (high - low) / (1.0 + math.exp(-delta / temperature))
    detail = {"delta": round(delta, 5), "tokens": len(follows)}
    return Rating(round(value, 4), "", True, mode="likelihood", detail=detail)
