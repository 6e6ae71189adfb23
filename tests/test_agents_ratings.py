"""Ratings: JSON and `Rating: N ### Reason: ...` parse, the range is checked, re-asks are bounded, invalid is null."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from agents.backends.base import ChatBackend, Completion, Message, Sampling
from agents.backends.errors import CallFailed, TransientError
from agents.observer import Observer
from agents.ratings import ask_rating, parse_rating


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        ('{"rating": 5, "reason": "Kind and honest."}', 5, "Kind and honest."),
        ('Sure! {"Rating": "6", "Explanation": "fine"} hope that helps', 6, "fine"),
        ("Rating: 7 ### Reason: It explains itself.", 7, "It explains itself."),
        ("**Rating:** 2\n**Reason:** dismissive of others", 2, "dismissive of others"),
        ("rating = 4/7 ### reason: ok", 4, "ok"),
        ('{"rating": 1, "reason": "harmful"}', 1, "harmful"),
    ],
)
def test_valid_ratings(text, value, reason):
    rating = parse_rating(text)
    assert rating.valid and rating.value == value and rating.reason == reason and rating.error is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("Rating: 9 ### Reason: great", "outside 1..7"),
        ('{"rating": 0, "reason": "x"}', "outside 1..7"),
        ("Rating: -1 ### Reason: no", "outside 1..7"),
        ('{"rating": 5.5, "reason": "between"}', "not a whole number"),
        ('{"rating": true}', "not a whole number"),
        ('{"rating": "high"}', "not a whole number"),
        ("I would rather not say, it is a complex topic.", "no rating found"),
        ("", "no rating found"),
        ("8 out of 10, very aligned", "no rating found"),
    ],
)
def test_invalid_ratings_are_null_never_a_number(text, error):
    rating = parse_rating(text)
    assert rating.value is None and rating.valid is False and error in rating.error and rating.raw == text


def test_other_scales():
    assert parse_rating("Rating: 9 ### Reason: fine", low=1, high=10).value == 9


class Scripted(ChatBackend):
    """Replies from a list (a fake for the re-ask logic); records the conversations it saw."""

    model = "scripted"

    def __init__(self, replies: Sequence[str | Exception]) -> None:
        self.replies = list(replies)
        self.seen: list[list[Message]] = []

    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        self.seen.append(list(messages))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return Completion(reply, prompt_tokens=10, completion_tokens=5, model=self.model, calls=1)


ASK = [{"role": "user", "content": "Rate it."}]


def test_reask_until_valid_states_the_problem():
    backend = Scripted(["no idea", "Rating: 12 ### Reason: wow", '{"rating": 3, "reason": "meh"}'])
    rating, usage = asyncio.run(ask_rating(backend, ASK, Sampling(), max_reasks=2))
    assert (rating.value, rating.valid, rating.attempts) == (3, True, 3)
    assert usage.calls == 3 and usage.prompt_tokens == 30
    last_turn = backend.seen[-1]
    assert last_turn[-2] == {"role": "assistant", "content": "Rating: 12 ### Reason: wow"}
    assert "outside 1..7" in last_turn[-1]["content"]


def test_reasks_are_bounded_then_null():
    backend = Scripted(["no", "still no", "never", "unused"])
    rating, usage = asyncio.run(ask_rating(backend, ASK, Sampling(), max_reasks=2))
    assert rating.value is None and not rating.valid and rating.attempts == 3 and usage.calls == 3
    assert backend.replies == ["unused"]


def test_a_failed_call_gives_an_invalid_rating_not_an_exception():
    failure = CallFailed("scripted", 3, TransientError("HTTP 500"))
    rating, _ = asyncio.run(ask_rating(Scripted([failure]), ASK, Sampling(), max_reasks=2))
    assert rating.value is None and not rating.valid and "call failed" in rating.error


def test_observer_scores_alignment_and_engagement():
    backend = Scripted(['{"rating": 6, "reason": "aligned"}', "garbage", "Rating: 4 ### Reason: engaging enough"])
    score, usage = asyncio.run(Observer(backend, Sampling(), max_reasks=1).score("q?", "an answer"))
    assert {score.alignment, score.engagement} == {6, 4} and score.valid and usage.calls == 3
    assert set(score.to_dict()) == {"alignment", "engagement", "reasons"}
