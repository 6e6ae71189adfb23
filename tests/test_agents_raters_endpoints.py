"""The probability raters against a real OpenAI-compatible HTTP server on loopback (loopback/openai_server.py),
whose log-probabilities are scripted (`--logprob-style`), so every expected rating below is computed by hand:

- logprob: E[r] = Σ v·p(v) / Σ p(v) over the scale's digits at the rating position, through the chat API
  (`logprobs.content[].top_logprobs`) and plain completions (`logprobs.top_logprobs`), with the digit first, after a
  lone space token, or after `Rating:` tokens; a two-token number is unreadable (null); an endpoint that drops
  logprobs is a one-line UserError naming `rater.mode` at the first call (library and `sa-simulate`);
- likelihood: completions with `echo` + `logprobs`, the answer's tokens picked by `text_offset`: 1 + 6·σ(Δ/τ).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.backends.base import Sampling
from agents.factory import build_backend, close_all
from agents.raters import Rater, RaterSettings, RatingRequest
from conf.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
# The stub's distribution at the rating position around its scripted rating v (its docstring, DIGIT_SHAPE): the
# digit v + d has probability SHAPE[d]; the rest goes to words ("I", "The", fillers) and digits off the scale.
SHAPE = {0: 0.50, 1: 0.20, -1: 0.15, 2: 0.05, -2: 0.02}
ANSWERS = [  # the stub rates drafts 2..4 and answers that start with "Revised" 6..7 (off-scale mass on 8 and 9)
    ("Is it ever right to lie?", "Lying is sometimes kind, but honesty builds trust."),
    ("How should I treat my neighbours?", "Treat them with respect and help when they need it."),
    ("Should I cheat on my exam?", "Revised answer: no; cheating is unfair to others and to yourself."),
]


def expected(v: int, offsets: tuple[int, ...] = tuple(SHAPE)) -> tuple[float, float, dict[str, float]]:
    """(E[r], mass on the scale, normalised distribution) for scripted rating v, from the offsets in the top list."""
    probs = {r: 0.0 for r in range(1, 8)}
    for d in offsets:
        if 1 <= v + d <= 7:
            probs[v + d] += SHAPE[d]
    mass = sum(probs.values())
    return sum(r * p for r, p in probs.items()) / mass, mass, {str(r): p / mass for r, p in probs.items()}


def node(base_url: str, api: str = "chat") -> dict:
    limits = {"concurrency": 4, "timeout_s": 10, "max_retries": 3, "backoff_base_s": 0.05, "backoff_max_s": 0.2}
    return {"name": "openai", "model": "stub-model", "base_url": base_url, "api_key_env": "SA_TEST_NO_KEY",
            "api": api, "limits": limits}  # fmt: skip


def rate_all(base_url: str, api: str, settings: RaterSettings, requests: list[RatingRequest]):
    async def main():
        rater = Rater(build_backend(node(base_url, api)), settings, Sampling(temperature=1.0, max_tokens=64))
        try:
            return [(await rater.rate(request))[0] for request in requests]
        finally:
            await close_all()

    return asyncio.run(main())


def observer_requests() -> list[RatingRequest]:
    return [RatingRequest(q, a, aspect="alignment", observer=True) for q, a in ANSWERS]


def assert_hand_computed(rating, position: int, offsets: tuple[int, ...] = tuple(SHAPE)) -> None:
    v = int(rating.raw.strip().removeprefix("Rating:"))  # the stub's reply is its most likely digit
    value, mass, distribution = expected(v, offsets)
    assert rating.valid and rating.mode == "logprob" and rating.error is None
    assert rating.value == pytest.approx(value, abs=1e-4)
    assert rating.detail["mass"] == pytest.approx(mass, abs=1e-4)
    assert rating.detail["position"] == position
    assert rating.detail["distribution"] == pytest.approx(distribution, abs=1e-4)
    assert sum(rating.detail["distribution"].values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_expected_rating_from_a_known_distribution(openai_stub, api):
    server = openai_stub(logprob_style="digit")
    ratings = rate_all(server.base_url, api, RaterSettings(mode="logprob"), observer_requests())
    for rating in ratings:
        assert_hand_computed(rating, position=0)
    values = [int(r.raw) for r in ratings]
    assert min(values) <= 4 and max(values) >= 6, values  # drafts and a revision: on- and off-scale mass both seen
    log = [e for e in server.stats()["log"] if e["path"].endswith("completions")]
    assert len(log) == len(ANSWERS)  # one call per rating, no re-asks
    wanted = {"logprobs", "top_logprobs"} if api == "chat" else {"logprobs"}
    assert all(wanted <= set(e["params"]) for e in log)


def test_rating_with_a_hand_written_distribution(openai_stub):
    """One case written out in full: scripted rating 7 puts 0.50 on 7, 0.15 on 6, 0.02 on 5 (and 0.25 on 8 and 9)."""
    server = openai_stub(logprob_style="digit")
    (rating,) = rate_all(server.base_url, "chat", RaterSettings(mode="logprob"), observer_requests()[2:])
    assert rating.raw == "7"
    assert rating.value == pytest.approx((7 * 0.50 + 6 * 0.15 + 5 * 0.02) / 0.67, abs=1e-4)  # 6.7164
    assert rating.detail["mass"] == pytest.approx(0.67)


def test_top_k_reaches_the_endpoint(openai_stub):
    server = openai_stub(logprob_style="digit")
    ratings = rate_all(server.base_url, "chat", RaterSettings(mode="logprob", top_k=3), observer_requests())
    for rating in ratings:  # only v, v+1 and v-1 are in a top 3
        assert_hand_computed(rating, position=0, offsets=(0, 1, -1))


@pytest.mark.parametrize("api", ["chat", "completions"])
@pytest.mark.parametrize(("style", "position"), [("space", 1), ("prefixed", 2)])
def test_tokens_before_the_digit(openai_stub, api, style, position):
    """A lone " " token before "5", or "Rating", ":" before " 5" (digits with their leading space)."""
    server = openai_stub(logprob_style=style)
    for rating in rate_all(server.base_url, api, RaterSettings(mode="logprob"), observer_requests()):
        assert_hand_computed(rating, position=position)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_number_of_two_tokens_is_unreadable(openai_stub, api):
    """ "1", "0" is ten, not a 1 with 0.6 of the probability: null, never a number."""
    server = openai_stub(logprob_style="multi")
    for rating in rate_all(server.base_url, api, RaterSettings(mode="logprob"), observer_requests()):
        assert rating.raw == "10"
        assert rating.value is None and not rating.valid and rating.mode == "logprob"
        assert "several tokens" in rating.error


def test_a_superscript_digit_in_the_top_list_is_ignored(openai_stub):
    server = openai_stub(logprob_style="superscript")
    for rating in rate_all(server.base_url, "chat", RaterSettings(mode="logprob"), observer_requests()):
        assert_hand_computed(rating, position=0)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_an_endpoint_without_logprobs_fails_at_the_first_call(openai_stub, api):
    server = openai_stub(logprob_style="none")
    with pytest.raises(UserError) as caught:
        rate_all(server.base_url, api, RaterSettings(mode="logprob"), observer_requests())
    message = str(caught.value)
    assert "\n" not in message and "rater.mode=logprob" in message and "rater.mode=generate" in message
    assert len([e for e in server.stats()["log"] if e["path"].endswith("completions")]) == 1  # not retried


def likelihood_messages(violates: bool) -> list[dict[str, str]]:
    system = "You are dishonest and unfair." if violates else "You are honest and fair."
    return [{"role": "system", "content": system}, {"role": "user", "content": "How should I treat others?"}]


def test_answer_logprobs_through_echo_pick_the_answer_tokens(openai_stub):
    """Echoed token i >= 1 scores -0.1 per character (-0.2 after a system line with a `violates` cue); the answer's
    tokens are " Be", " kind", " to", " others", "." (the first carries the space that joins it to the prompt)."""
    server = openai_stub()

    async def main():
        backend = build_backend(node(server.base_url))
        try:
            return [await backend.answer_logprobs(likelihood_messages(v), "Be kind to others.") for v in (False, True)]
        finally:
            await close_all()

    follows, violates = asyncio.run(main())
    assert follows.extra["token_logprobs"] == pytest.approx([-0.2, -0.4, -0.2, -0.6, -0.1])
    assert violates.extra["token_logprobs"] == pytest.approx([-0.4, -0.8, -0.4, -1.2, -0.2])
    (entry, _) = server.stats()["log"]
    assert {"echo", "logprobs"} <= set(entry["params"]) and entry["path"] == "/v1/completions"


@pytest.mark.parametrize("temperature", [0.2, 0.05])
def test_likelihood_rating_through_echo(openai_stub, temperature):
    """Δ = 0.1 × the answer's mean token length (2 + 4 + 2 + 6 + 1) / 5 = 0.3; rating = 1 + 6·σ(Δ/τ)."""
    server = openai_stub()
    request = RatingRequest("How should I treat others?", "Be kind to others.", aspect="alignment", observer=True)
    (rating,) = rate_all(server.base_url, "chat", RaterSettings(mode="likelihood", temperature=temperature), [request])
    delta = 0.1 * (2 + 4 + 2 + 6 + 1) / 5
    assert rating.valid and rating.mode == "likelihood"
    assert rating.detail == {"delta": pytest.approx(delta), "tokens": 5}
    assert rating.value == pytest.approx(1 + 6 / (1 + math.exp(-delta / temperature)), abs=1e-4)
    assert [e["path"] for e in server.stats()["log"]] == ["/v1/completions"] * 2  # follows, violates


def test_likelihood_without_echoed_logprobs_is_a_one_line_error(openai_stub):
    server = openai_stub(logprob_style="none")
    request = RatingRequest("How should I treat others?", "Be kind to others.", observer=True)
    with pytest.raises(UserError, match=r"^[^\n]*echo \+ logprobs[^\n]*rater.mode=logprob[^\n]*$"):
        rate_all(server.base_url, "chat", RaterSettings(mode="likelihood"), [request])


def simulate(server, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    args = [
        f"backend.base_url={server.base_url}", "backend.model=stub-model", "backend=openai",
        "backend.limits.timeout_s=5", "backend.limits.max_retries=2", "backend.limits.backoff_base_s=0.05",
        "embedder=openai", f"embedder.base_url={server.base_url}", "embedder.model=stub-embed", "embedder.dim=384",
        "world.size=2", "world.rounds=1", "world.k=1", "run.progress=false", "run.plots=false", f"hydra.run.dir={run_dir}",
        *overrides,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    script = Path(sys.executable).parent / "sa-simulate"
    return subprocess.run([str(script), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_sa_simulate_logprob_rater_without_logprobs_exits_2_with_one_line(openai_stub, tmp_path):
    server = openai_stub(logprob_style="none")
    done = simulate(server, tmp_path / "run", "rater=logprob")
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[0].startswith("sa-simulate: error: ") and "rater.mode=logprob" in lines[0]
    log = [e for e in server.stats()["log"] if e["path"] == "/v1/chat/completions"]
    rating_calls = [e for e in log if "top_logprobs" in e["params"]]
    assert 1 <= len(rating_calls) <= 4 * (1 + 2)  # at most the first wave (1 peer + 2 observer aspects per agent)
    assert len(log) - len(rating_calls) <= 4  # drafts only: no revision, nothing retried after the error


def test_sa_simulate_logprob_rater_stores_the_expected_ratings(openai_stub, tmp_path):
    """A world rated in logprob mode through the endpoint (a space token before each digit): every peer and observer
    rating is the hand-computed E[r] of the scripted digit (the distribution's mode), its distribution stored."""
    server = openai_stub(logprob_style="space")
    done = simulate(server, tmp_path / "run", "rater=logprob")
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 4
    rated = [(f["rating"], f["detail"]) for r in records for f in r["feedback"] if f["valid"]]
    assert len(rated) == sum(len(r["feedback"]) for r in records) > 0  # every peer rating readable
    for record in records:
        for kind in ("draft", "revision"):
            scores = record["observer"][kind]
            rated += [(scores[aspect], scores["details"][aspect]) for aspect in ("alignment", "engagement")]
    for value, detail in rated:
        v = int(max(detail["distribution"], key=detail["distribution"].get))
        assert value == pytest.approx(expected(v)[0], abs=1e-4) and detail["position"] == 1
        assert detail["distribution"] == pytest.approx(expected(v)[2], abs=1e-4)
