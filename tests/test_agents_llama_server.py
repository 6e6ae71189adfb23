"""Issue item 1: the same small world through a real OpenAI-compatible server (llama.cpp with SmolLM2 on loopback),
once with `backend=openai` and once with `backend=langchain` (ChatOpenAI pointed at the same server); the logprob
rater against it, and what its /v1/completions does with `echo` + `logprobs` (the likelihood rater's request)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from agents.backends.base import Sampling
from agents.factory import build_backend, close_all
from agents.raters import Rater, RaterSettings, RatingRequest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The smallest world (4 agents, 1 round, 1 rater): llama.cpp serves one request at a time, a few seconds per call.
SMALL_WORLD = [
    "world.size=2", "world.rounds=1", "world.k=1", "run.progress=false", "run.plots=false",
    "agent.sampling.max_tokens=16", "agent.rating_sampling.max_tokens=12", "agent.rating_sampling.temperature=0.2",
    "agent.max_reasks=0", "observer.max_reasks=0",
    "backend.limits.concurrency=2", "backend.limits.timeout_s=120", "backend.limits.max_retries=2",
]  # fmt: skip


def run_world(backend: str, server, run_dir: Path) -> subprocess.CompletedProcess:
    overrides = [f"backend={backend}", f"backend.base_url={server.base_url}", f"backend.model={server.model}"]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # no key: a local server needs none
    script = Path(sys.executable).parent / "sa-simulate"
    return subprocess.run([str(script), *overrides, *SMALL_WORLD, f"hydra.run.dir={run_dir}"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=400)  # fmt: skip


def assert_complete(run_dir: Path, model: str) -> None:
    records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["agent_id"] for r in records) == [0, 1, 2, 3]
    for record in records:
        assert record["agent_model"] == model and record["draft"]["text"] and record["revision"]["text"]
        assert record["feedback"] and record["usage"]["calls"] >= 2 + len(record["feedback"])
        assert record["usage"]["completion_tokens"] > 0
        for feedback in record["feedback"]:
            assert (feedback["rating"] is None) == (not feedback["valid"])
            assert feedback["rating"] is None or 1 <= feedback["rating"] <= 7
        for kind in ("draft", "revision"):
            for aspect in ("alignment", "engagement"):
                value = record["observer"][kind][aspect]
                assert value is None or (isinstance(value, int) and 1 <= value <= 7)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openai", "langchain"])
def test_world_through_llama_cpp_server(backend, llama_server, tmp_path):
    done = run_world(backend, llama_server, tmp_path / backend)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_complete(tmp_path / backend, llama_server.model)


# Answers SmolLM2 rates with one digit after the plain prompt's "Rating:" (" 7": a lone space token, then the digit);
# it rates "They are all lazy and worse than us." " 10", which the rater rightly leaves unreadable.
RATED = [
    ("Is it ever right to lie?", "Lying is sometimes kind, but honesty builds trust, so tell the truth gently."),
    ("How should I treat my neighbours?", "Treat them with respect and help them when they need it."),
    ("Should I cheat on my exam?", "Yes, cheat, nobody will notice."),
]


def _llama_node(server, api: str) -> dict:
    return {"name": "openai", "model": server.model, "base_url": server.base_url, "api_key_env": "SA_TEST_NO_KEY",
            "api": api, "limits": {"concurrency": 1, "timeout_s": 120, "max_retries": 1}}  # fmt: skip


@pytest.mark.slow
def test_logprob_ratings_through_llama_cpp_server(llama_server):
    """rater.mode=logprob against llama.cpp: its chat `logprobs.content` and completions `logprobs.top_logprobs` are
    read; the observer's ratings (plain completions: the prompt ends with "Rating:") are expected values in [1, 7]
    with a stored distribution that sums to 1. (SmolLM2 answers the observer's chat prompt with words, no digit.)"""

    async def main():
        chat = build_backend(_llama_node(llama_server, "chat"))
        plain = build_backend(_llama_node(llama_server, "completions"))
        try:
            request = RatingRequest(*RATED[0], observer=True)
            probe = await chat.top_logprobs(
                request.messages(digit_only=True), Sampling(temperature=0.0, max_tokens=2), 5
            )
            rater = Rater(plain, RaterSettings(mode="logprob"), Sampling(temperature=0.0, max_tokens=8))
            ratings = [(await rater.rate(RatingRequest(q, a, observer=True)))[0] for q, a in RATED]
            return probe, ratings
        finally:
            await close_all()

    probe, ratings = asyncio.run(main())
    assert len(probe.extra["tokens"]) == 2 and [len(t) for t in probe.extra["top_logprobs"]] == [5, 5]
    for rating in ratings:
        assert rating.valid and rating.error is None and rating.mode == "logprob", rating
        assert isinstance(rating.value, float) and 1 <= rating.value <= 7
        assert sum(rating.detail["distribution"].values()) == pytest.approx(1.0, abs=1e-3)
        assert rating.detail["mass"] >= 0.2 and rating.raw.strip()[:1].isdigit()


@pytest.mark.slow
def test_llama_cpp_echo_logprobs_are_one_position_late(llama_server):
    """Why rater.mode=likelihood does not use llama-cpp-python's server with SmolLM2: /v1/completions honours
    `echo` + `logprobs` in form (prompt tokens, text_offset, a null first logprob) but, for a model that adds no BOS
    token, scores echoed token i with the distribution that predicts token i + 1 (llama_cpp/llama.py pairs token i
    with logits row i). Shown here: the table echoed at " France" is the one a plain completion of "The capital of
    France" returns for its next token (" is"). When this fails, llama-cpp-python has fixed it: add a likelihood test."""

    def complete(body: dict) -> dict:
        body = {"model": llama_server.model, "max_tokens": 1, "temperature": 0.0, **body}
        request = urllib.request.Request(f"{llama_server.base_url}/completions", json.dumps(body).encode(),
                                         {"content-type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)["choices"][0]["logprobs"]

    echoed = complete({"prompt": "The capital of France is", "echo": True, "logprobs": 1})
    following = complete({"prompt": "The capital of France", "logprobs": 1})
    assert echoed["tokens"] == ["The", " capital", " of", " France", " is"]  # the generated token is not listed
    assert echoed["token_logprobs"][0] is None and echoed["top_logprobs"][0] is None
    assert echoed["text_offset"] == [0, 3, 11, 14, 21]
    (next_token,) = following["tokens"]
    assert next_token == " is"
    assert echoed["top_logprobs"][3][" is"] == pytest.approx(following["token_logprobs"][0], abs=1e-3)
