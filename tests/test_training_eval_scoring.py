"""Multiple-choice scoring: packed batches equal one forward pass per choice, hand-checked length rules (sum vs
per-token mean), TruthfulQA MC2 mass, the score cache, and determinism on the real SmolLM2."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.dataset import completion_ids, render
from training.eval import bigbench
from training.eval import tasks as mc
from training.eval.scoring import (
    ChoiceScore,
    ChoiceScorer,
    Conversation,
    ScoreCache,
    conversation,
    correct_prob_mass,
    mc_grade,
)

FIXTURES = Path(__file__).parent / "data" / "bigbench"


def naive_score(model, tokenizer, conv: Conversation, choice: str) -> tuple[float, int]:
    """One full forward pass over prompt + completion, log-probs summed by hand (the reference implementation)."""
    messages = [{"role": r, "content": c} for r, c in conv]
    prompt, completion = render(tokenizer, messages, choice)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = completion_ids(tokenizer, completion)
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    total = sum(logprobs[len(prompt_ids) - 1 + i, token].item() for i, token in enumerate(answer_ids))
    return total, len(answer_ids)


def test_packed_batched_scores_equal_one_pass_per_choice(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    convs = [
        conversation(("user", "Is honesty important?")),
        conversation(("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Tell me a fact.")),
    ]
    choices = ["Yes.", "Yes, honesty builds trust between people over a long time.", "No", "Water boils at 100 C."]
    requests = [(conv, choice) for conv in convs for choice in choices] + [(convs[0], "Yes.")]  # a duplicate
    for share, batch_tokens in ((True, 4096), (True, 64), (False, 256)):
        scorer = ChoiceScorer(model, tokenizer, batch_tokens=batch_tokens, share_prompts=share)
        scores = scorer.score(requests)
        assert scorer.computed == len(requests) - 1  # the duplicate is scored once
        for (conv, choice), score in zip(requests, scores, strict=True):
            expected, n_tokens = naive_score(model, tokenizer, conv, choice)
            assert score.n_tokens == n_tokens
            assert score.sum_logprob == pytest.approx(expected, abs=2e-4)
    # the end-of-turn token is scored (as trained): one token more than the bare choice
    bare = len(tokenizer("Yes.", add_special_tokens=False)["input_ids"])
    assert ChoiceScorer(model, tokenizer).score([(convs[0], "Yes.")])[0].n_tokens == bare + 1
    no_eot = ChoiceScorer(model, tokenizer, end_of_turn=False).score([(convs[0], "Yes.")])[0]
    assert no_eot.n_tokens == bare


class KnownScorer:
    """A scorer with hand-set log-probs per choice text (sum, tokens): the logic of the length rules in isolation."""

    TABLE = {
        "Yes.": (-2.0, 2),  # mean -1.0
        "Yes, and here is a much longer answer.": (-6.0, 10),  # mean -0.6
        "No.": (-1.5, 2),  # mean -0.75
        "No, and here is a much longer answer.": (-5.0, 10),  # mean -0.5
        "A": (-3.0, 1),  # mean -3.0
        "B b b": (-3.3, 3),  # mean -1.1
        "C c": (-3.2, 2),  # mean -1.6
    }

    def score(
        self, requests: Sequence[tuple[Conversation, str]], progress: Callable[[int], None] | None = None
    ) -> list[ChoiceScore]:
        return [ChoiceScore(*self.TABLE[choice]) for _, choice in requests]


def test_choices_of_different_length_hand_checked() -> None:
    items = bigbench.mc_items(FIXTURES / "length_fixture.json", "length")
    questions = [mc.Question("length", "length", it.index, conversation(("user", it.input)), it.choices, it.scores)
                 for it in items]  # fmt: skip
    records = mc.score_questions(KnownScorer(), questions)
    # sum rule: the short "Yes." (right), the short "No." (wrong), "A" at -3.0 (wrong)
    assert [r["score"] for r in records] == [1.0, 0.0, 0.0]
    # per-token mean: the long answer (wrong), the long answer (right), "B b b" at -1.1 (right)
    assert [r["score_norm"] for r in records] == [0.0, 1.0, 1.0]
    assert [r["pick"] for r in records] == [0, 0, 0] and [r["pick_norm"] for r in records] == [1, 1, 1]
    summary = mc.summarize(records)["length"]
    assert summary["score"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["score_norm"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["chance"] == pytest.approx((0.5 + 0.5 + 1 / 3) / 3, abs=1e-4)
    # length bias: the sum rule always took the shortest choice, the mean rule never; the longest is right 2 of 3
    assert [r["shortest"] for r in records] == [0, 0, 0] and [r["longest"] for r in records] == [1, 1, 1]
    assert (summary["shortest_sum"], summary["shortest_norm"]) == (1.0, 0.0)
    assert summary["correct_longest"] == pytest.approx(2 / 3, abs=1e-4)


def test_mc2_probability_mass_and_ties_by_hand() -> None:
    scores = [ChoiceScore(-2.0, 2), ChoiceScore(-6.0, 10)]
    assert correct_prob_mass(scores, [1, 0]) == pytest.approx(1 / (1 + math.exp(-4)))
    # per-token mean: -1.0 vs -0.6 → softmax over means
    assert correct_prob_mass(scores, [1, 0], by="mean") == pytest.approx(1 / (1 + math.exp(0.4)))
    assert correct_prob_mass(scores, [1, 1]) == pytest.approx(1.0)
    tie = [ChoiceScore(-1.0, 1), ChoiceScore(-1.0, 1)]
    assert mc_grade(tie, [0, 1]) == 0.0  # ties go to the first choice, deterministically


def test_score_cache_round_trip_skips_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    questions = mc.hhh_questions(FIXTURES)
    first = ChoiceScorer(model, tokenizer, cache=ScoreCache(tmp_path / "scores.json"))
    fresh = mc.score_questions(first, questions)
    assert first.computed == sum(len(q.choices) for q in questions)
    second = ChoiceScorer(model, tokenizer, cache=ScoreCache(tmp_path / "scores.json"))
    assert mc.score_questions(second, questions) == fresh
    assert second.computed == 0


@pytest.mark.slow
def test_real_smollm2_scores_are_deterministic(smollm2_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    questions = mc.hhh_questions(FIXTURES) + mc.truthful_qa_questions(FIXTURES)
    runs = []
    for _ in range(2):  # a fresh load each time: nothing carried over but the checkpoint
        model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
        runs.append(mc.score_questions(ChoiceScorer(model, tokenizer), questions))
        del model
    assert runs[0] == runs[1]
    for record in runs[0]:
        assert all(v < 0 for v in record["sum_logprob"]) and all(n > 1 for n in record["n_tokens"])


class FixedScorer:
    """Returns scripted (sum log-prob, tokens) per choice text: the known inputs of `summarize`."""

    def __init__(self, table: dict[str, tuple[float, int]]) -> None:
        self.table = table

    def score(self, requests, progress=None) -> list[ChoiceScore]:
        return [ChoiceScore(*self.table[choice]) for _, choice in requests]


def test_summarize_means_from_known_log_probs_by_hand() -> None:
    conv = conversation(("user", "q"))
    questions = [
        mc.Question("hhh", "harmless", 0, conv, ("a0", "b0"), (1, 0)),
        mc.Question("hhh", "harmless", 1, conv, ("a1", "b1"), (0, 1)),
        mc.Question("hhh", "helpful", 2, conv, ("a2", "b2"), (1, 0)),
        mc.Question("hhh_adversarial", "harmless", 0, conv, ("a3", "b3"), (0, 1)),
    ]
    scorer = FixedScorer({
        "a0": (-1.0, 1), "b0": (-2.0, 2),  # sum picks a (1); mean ties at -1: first, a (1)
        "a1": (-1.0, 1), "b1": (-3.0, 1),  # both pick a (0)
        "a2": (-6.0, 3), "b2": (-4.0, 1),  # sum picks b (0); mean -2 vs -4 picks a (1)
        "a3": (-5.0, 1), "b3": (-9.0, 3),  # sum picks a (0); mean -5 vs -3 picks b (1)
    })  # fmt: skip
    summary = mc.summarize(mc.score_questions(scorer, questions))
    hhh = summary["hhh"]
    assert (hhh["score"], hhh["score_norm"], hhh["chance"], hhh["n"]) == (0.3333, 0.6667, 0.5, 3)
    assert hhh["categories"]["harmless"] == {"score": 0.5, "score_norm": 0.5, "chance": 0.5, "n": 2}
    assert hhh["categories"]["helpful"] == {"score": 0.0, "score_norm": 1.0, "chance": 0.5, "n": 1}
    # length bias over items whose choices differ in length (item 1 does not): shortest a0, b2; longest b0, a2.
    # sum picks a0 (shortest), b2 (shortest): 1.0; mean picks a0 (shortest), a2 (not): 0.5; correct longest: a2 only
    assert (hhh["shortest_sum"], hhh["shortest_norm"], hhh["correct_longest"]) == (1.0, 0.5, 0.5)
    assert mc.adversarial_drop(summary) == {  # clean minus adversarial (0 by sum, 1 by mean)
        "score": 0.3333, "score_norm": -0.3333,
        "categories": {"harmless": {"score": 0.5, "score_norm": -0.5}, "helpful": {"score": None, "score_norm": None}},
    }  # fmt: skip
