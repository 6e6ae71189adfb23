"""Memory in a real world run: the stub OpenAI-compatible endpoint for chat, the real local encoder for memory.

A 2x2 world runs round by round (rounds=1, then resumed to 2 and 3 in the same run dir); after each round the
saved world memory snapshot must hold the seed priors plus every revision so far, memory grows each round, and a
later round's draft shows the agent's own earlier answer in `memory_hits`. Embedder calls stay below one per
interaction.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conf import CONFIG_DIR
from loopback.fixtures import openai_stub  # noqa: F401 - fixture
from memory.snapshot import load_all

pytestmark = pytest.mark.slow

PRIORS, ROUNDS = 10, 3
# Near-identical wordings of one question (cosine > 0.9 to each other, < 0.5 to every shipped prior), so a later
# turn's nearest memory is the agent's own earlier answer, and each new wording is a new memory.
VARIANTS = [f"Should zoos be closed down? (asked on day {day})" for day in range(1, 9)]


def simulate(run_dir: Path, base_url: str, questions: Path, rounds: int) -> dict:
    from hydra import compose, initialize_config_dir

    from environment.simulate import simulate as run

    overrides = [
        "backend=openai", f"backend.base_url={base_url}", "backend.model=stub-model", "world.size=2",
        f"world.rounds={rounds}", f"questions.source={questions}", f"memory.priors_per_agent={PRIORS}",
        "memory.population=half_half", "run.plots=false", "run.progress=false", "run.snapshot_every_s=0",
    ]  # fmt: skip
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("simulate", overrides=overrides)
    assert cfg.embedder.name == "hf_local"  # the real local encoder, not the stub's embeddings
    return asyncio.run(run(cfg, run_dir))


def versions(store) -> int:
    """Answers remembered, superseded ones included."""
    return sum(1 + len(record.history) for record in store.records())


def test_memory_grows_each_round_and_later_drafts_retrieve_earlier_answers(tmp_path, openai_stub):  # noqa: F811
    from environment.records import read_episodes

    server = openai_stub()
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(VARIANTS) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"

    sizes, counts = [], []
    for rounds in range(1, ROUNDS + 1):
        metrics = simulate(run_dir, server.base_url, questions, rounds)
        assert metrics["records"] == 4 * rounds
        stores, meta = load_all(run_dir / "memory")
        assert meta["episodes"] == 4 * rounds and sorted(stores) == [0, 1, 2, 3]
        records = list(read_episodes(run_dir / "episodes.jsonl"))
        for agent, store in stores.items():
            asked = {r["question"] for r in records if r["agent_id"] == agent}
            assert len(store) == PRIORS + len(asked)  # priors + one memory per distinct question asked
            assert versions(store) == PRIORS + rounds  # every turn's revision is remembered
            latest = max((r for r in records if r["agent_id"] == agent), key=lambda r: r["round"])
            assert store.get(latest["question"]).answer == latest["revision"]["text"]
        sizes.append({agent: len(store) for agent, store in stores.items()})
        counts.append(sum(versions(store) for store in stores.values()))
        if rounds == 1:
            embedder = metrics["embedder"]
            assert embedder["inner_calls"] <= 2 and embedder["calls_per_interaction"] <= 1  # priors + round 0

    assert counts == [4 * (PRIORS + 1), 4 * (PRIORS + 2), 4 * (PRIORS + 3)]
    assert all(sizes[r][a] <= sizes[r + 1][a] for r in range(ROUNDS - 1) for a in range(4))
    assert sum(sizes[0].values()) < sum(sizes[1].values()) < sum(sizes[2].values())

    records = list(read_episodes(run_dir / "episodes.jsonl"))
    revision = {(r["agent_id"], r["round"]): r for r in records}
    for record in records:
        hits = record["draft"]["memory_hits"]
        if record["round"] == 0:
            assert hits == []  # no prior is about zoos (all below the 0.5 threshold)
            continue
        (hit,) = hits  # top-1 above the threshold: the agent's own answer from an earlier round
        earlier = revision[(record["agent_id"], hit["round"])]
        assert hit["source"] == "revision" and hit["round"] < record["round"]
        assert (hit["question"], hit["answer"]) == (earlier["question"], earlier["revision"]["text"])
        assert hit["similarity"] > 0.9


def test_default_threshold_lets_the_population_change_what_drafts_see() -> None:
    """On the default embedder, shipped questions and priors, the default threshold must let drafts see priors often
    enough that all_bad and all_good worlds differ (the reference's 0.7 suits ada-002: MiniLM put 3 of 100 drafts of
    a 5x5, 4-round world above it; 0.5 put 29)."""
    from omegaconf import OmegaConf

    from environment.questions import QuestionSchedule, load_questions
    from memory.cache import EmbeddingCache
    from memory.embedders import LocalEncoder
    from memory.priors import load_priors, seed
    from memory.seeding import fill_stores
    from memory.store import MemoryStore

    memory = OmegaConf.load(CONFIG_DIR / "memory" / "default.yaml")
    size, rounds, items = 5, 4, load_priors()
    n = size * size
    schedule = QuestionSchedule(load_questions("builtin"), n, 0, "sandbox-seed0")
    turns = [(a, schedule.question(r, a).text) for r in range(rounds) for a in range(n)]
    encoder = EmbeddingCache(LocalEncoder())  # the priors are embedded once for the three memories below
    vectors = dict(zip([q for _, q in turns], asyncio.run(encoder.embed([q for _, q in turns])), strict=True))
    good, bad = {i.good for i in items}, {i.bad for i in items}

    def seen(population: str, threshold: float) -> list[str | None]:
        stores = {a: MemoryStore(encoder.dim) for a in range(n)}
        priors = seed(population, n, int(memory.priors_per_agent), 0, items, size)
        asyncio.run(fill_stores(stores, encoder, dict(enumerate(priors))))
        hits = [stores[a].search(vectors[q], k=int(memory.top_k), threshold=threshold) for a, q in turns]
        return [h[0].answer if h else None for h in hits]

    bad_world, good_world = seen("all_bad", memory.threshold), seen("all_good", memory.threshold)
    with_prior = [i for i, answer in enumerate(bad_world) if answer is not None]
    assert len(with_prior) >= 0.15 * len(turns)  # measured: 26 % of these 100 drafts
    assert all(bad_world[i] in bad and good_world[i] in good for i in with_prior)
    assert sum(answer is not None for answer in seen("all_bad", 0.7)) < 0.1 * len(turns)  # why 0.7 had to go
