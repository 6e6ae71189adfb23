"""The loss family against hand computations: on fixed per-response NLLs and on a fixed tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from training.collator import GroupCollator
from training.dataset import completion_ids, render
from training.logprobs import response_stats
from training.losses import ResponseStats, dpo_loss, sft_loss, simpo_loss, stable_alignment_loss


def sa(nll, ratings, **kw):
    return stable_alignment_loss(
        torch.tensor(nll, dtype=torch.float64), torch.tensor(ratings, dtype=torch.float64), **kw
    )


def test_unsorted_ratings_use_each_negatives_own_rating():
    # ratings [3, 7, 5]: b = 1 (ℓ_b = 1.5); d_0 = 1.5 − 2.0 + (7 − 3)/7, d_2 = 1.5 − 1.0 + (7 − 5)/7
    out = sa([2.0, 1.5, 1.0], [3, 7, 5], margin=1.0, lam=0.2, rating_scale=7)
    d0, d2 = -0.5 + 4 / 7, 0.5 + 2 / 7
    assert out.loss.item() == pytest.approx(1.5 + 0.2 * (d0 + d2) / 2, abs=1e-12)
    # the reference indexed the *sorted* ratings with original indices (r_0 → 7, r_2 → 3): a different number
    reference_bug = 1.5 + 0.2 * max(0.0, ((-0.5 + 0.0) + (0.5 + 4 / 7)) / 2)
    assert out.loss.item() != pytest.approx(reference_bug, abs=1e-6)
    # the same responses in another order give the same loss
    assert sa([1.0, 2.0, 1.5], [5, 3, 7]).loss.item() == pytest.approx(out.loss.item(), abs=1e-12)
    assert out.parts["penalty"] == pytest.approx((d0 + d2) / 2)
    assert out.parts["gap"] == pytest.approx(2.0 - 1.5)  # ℓ_low (rating 3) − ℓ_best
    assert out.parts["active_margin_frac"] == 1.0


def test_max_flow_margin_and_gradient():
    out = sa([2.0, 1.5, 1.0], [3, 7, 5], max_flow=True)
    assert out.loss.item() == pytest.approx(1.5 + 0.2 * (0.5 + 2 / 7), abs=1e-12)
    nll = torch.tensor([2.0, 1.5, 1.0], requires_grad=True)
    stable_alignment_loss(nll, torch.tensor([3.0, 7.0, 5.0]), lam=0.2).loss.backward()
    # ∂L/∂ℓ_b = 1 + λ (mean of two +1 terms), ∂L/∂ℓ_j = −λ/2
    assert nll.grad.tolist() == pytest.approx([-0.1, 1.2, -0.1])


def test_ties_pick_the_first_best_and_zero_margin_between_equals():
    # ratings [5, 7, 7]: b = 1 (first of the tie); d_0 = 2.0 − 1.0 + 2/7; d_2 = 2.0 − 1.2 + 0
    out = sa([1.0, 2.0, 1.2], [5, 7, 7], ties="include")
    assert out.loss.item() == pytest.approx(2.0 + 0.2 * ((1.0 + 2 / 7) + 0.8) / 2, abs=1e-12)
    # exclude (the default): the response tied with b is not a j; only d_0 remains
    assert sa([1.0, 2.0, 1.2], [5, 7, 7]).loss.item() == pytest.approx(2.0 + 0.2 * (1.0 + 2 / 7), abs=1e-12)


def test_ties_include_vs_exclude_on_float_ratings():
    # ratings [4.25, 4.25, 2.5, 1]: b = 0 (first of the tie, ℓ_b = 2.0); the j's:
    #   d_1 = 2.0 − 1.0 + 0 (tied with b), d_2 = 2.0 − 1.5 + 1.75/7, d_3 = 2.0 − 1.8 + 3.25/7
    nll, ratings = [2.0, 1.0, 1.5, 1.8], [4.25, 4.25, 2.5, 1.0]
    d1, d2, d3 = 1.0, 0.5 + 1.75 / 7, 0.2 + 3.25 / 7
    include = sa(nll, ratings, ties="include")
    exclude = sa(nll, ratings, ties="exclude")
    assert include.loss.item() == pytest.approx(2.0 + 0.2 * (d1 + d2 + d3) / 3, abs=1e-12)
    assert exclude.loss.item() == pytest.approx(2.0 + 0.2 * (d2 + d3) / 2, abs=1e-12)
    assert sa(nll, ratings).loss.item() == exclude.loss.item()  # exclude is the default
    # max_flow: the tied response (the largest d) is the max under include, left out under exclude
    assert sa(nll, ratings, ties="include", max_flow=True).loss.item() == pytest.approx(2.0 + 0.2 * d1, abs=1e-12)
    assert sa(nll, ratings, ties="exclude", max_flow=True).loss.item() == pytest.approx(
        2.0 + 0.2 * max(d2, d3), abs=1e-12
    )
    # gradients: include pushes the tied response down (−λ/3), exclude leaves it alone
    for ties, expected in (("include", [1.2, -0.2 / 3, -0.2 / 3, -0.2 / 3]), ("exclude", [1.2, 0.0, -0.1, -0.1])):
        x = torch.tensor(nll, dtype=torch.float64, requires_grad=True)
        stable_alignment_loss(x, torch.tensor(ratings, dtype=torch.float64), ties=ties).loss.backward()
        assert x.grad.tolist() == pytest.approx(expected, abs=1e-12), ties
    # the three-response case of the brief: 4.25 vs 4.25 vs 2.5
    three = sa([2.0, 1.0, 1.5], [4.25, 4.25, 2.5], ties="exclude")
    assert three.loss.item() == pytest.approx(2.0 + 0.2 * d2, abs=1e-12)
    assert sa([2.0, 1.0, 1.5], [4.25, 4.25, 2.5], ties="include").loss.item() == pytest.approx(
        2.0 + 0.2 * (d1 + d2) / 2, abs=1e-12
    )


def test_a_group_where_all_ratings_tie_is_sft_under_exclude():
    nll = [2.0, 1.0, 1.5]
    # include: b = 0, d = [1.0, 0.5] with zero margins → D = 0.75: the loss pushes two equally rated responses down
    assert sa(nll, [3, 3, 3], ties="include").loss.item() == pytest.approx(2.0 + 0.2 * 0.75, abs=1e-12)
    out = sa(nll, [3, 3, 3], ties="exclude")
    assert out.loss.item() == pytest.approx(2.0, abs=1e-12)  # J = ∅ → D = 0: SFT on b
    assert out.parts["penalty"] == 0.0 and out.parts["gap"] == 0.0 and out.parts["active_margin_frac"] == 0.0
    x = torch.tensor(nll, requires_grad=True)
    stable_alignment_loss(x, torch.tensor([4.5, 4.5, 4.5])).loss.backward()
    assert x.grad.tolist() == pytest.approx([1.0, 0.0, 0.0])
    # the same in a batch beside a group with a real gap: only that group gets a penalty
    nll2 = torch.tensor([[2.0, 1.0, 1.5], [1.0, 1.5, 0.0]])
    ratings2 = torch.tensor([[5.0, 5.0, 5.0], [6.0, 2.0, 0.0]])
    mask2 = torch.tensor([[True, True, True], [True, True, False]])
    batched = stable_alignment_loss(nll2, ratings2, mask2)
    assert batched.loss.item() == pytest.approx((2.0 + 1.0 + 0.2 * max(0.0, -0.5 + 4 / 7)) / 2, abs=1e-6)
    assert batched.parts["active_margin_frac"] == 1.0  # over the one group that has a j


def test_ties_are_decided_on_the_ratings_not_on_a_low_precision_cast():
    # in bf16, 4.30 and 4.31 both round to 4.3125; b must still be the 4.31 response and the other a j
    nll = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    out = stable_alignment_loss(nll, torch.tensor([4.30, 4.31]))
    assert out.loss.item() == pytest.approx(2.0 + 0.2 * 1.0, abs=0.02)


def test_unknown_ties_value_is_an_error():
    with pytest.raises(ValueError, match="ties='maybe'"):
        sa([1.0, 2.0], [3, 4], ties="maybe")


def test_inactive_margin_is_clamped_and_k1_is_sft():
    out = sa([1.0, 3.0], [7, 1])  # d = 1 − 3 + 6/7 < 0 → D = 0
    assert out.loss.item() == pytest.approx(1.0)
    assert out.parts["active_margin_frac"] == 0.0
    one = sa([2.5], [4])
    assert one.loss.item() == pytest.approx(2.5)
    assert sft_loss(torch.tensor([[2.5]]), torch.tensor([[4.0]])).loss.item() == pytest.approx(2.5)


def test_batched_groups_with_empty_slots():
    nll = torch.tensor([[2.0, 1.5, 1.0], [0.7, 0.9, float("nan")]], requires_grad=True)
    ratings = torch.tensor([[3.0, 7.0, 5.0], [2.0, 6.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    out = stable_alignment_loss(nll, ratings, mask)
    g1 = 1.5 + 0.2 * ((-0.5 + 4 / 7) + (0.5 + 2 / 7)) / 2
    g2 = 0.9 + 0.2 * max(0.0, 0.9 - 0.7 + 4 / 7)
    assert out.loss.item() == pytest.approx((g1 + g2) / 2, abs=1e-6)
    out.loss.backward()
    assert torch.isfinite(nll.grad).all() and nll.grad[1, 2] == 0


def test_dpo_and_simpo_match_their_equations():
    stats = ResponseStats(
        nll=torch.tensor([[1.0, 2.0, 1.5]]), logp_sum=torch.tensor([[-10.0, -30.0, -15.0]]),
        ratings=torch.tensor([[6.0, 2.0, 4.0]]), mask=torch.ones(1, 3, dtype=torch.bool),
        ref_logp_sum=torch.tensor([[-12.0, -28.0, -15.0]]),
    )  # fmt: skip
    # w = 0 (rating 6), l = 1 (rating 2)
    logits = 0.1 * ((-10 + 12) - (-30 + 28))
    expected = -math.log(1 / (1 + math.exp(-logits))) + 0.5 * 1.0
    assert dpo_loss(stats, beta=0.1, sft_weight=0.5).loss.item() == pytest.approx(expected, rel=1e-6)
    z = 2.0 * (2.0 - 1.0) - 0.5
    assert simpo_loss(stats, beta=2.0, gamma=0.5, nll_weight=1.0).loss.item() == pytest.approx(
        -math.log(1 / (1 + math.exp(-z))) + 1.0, rel=1e-6
    )
    tied = ResponseStats(stats.nll, stats.logp_sum, torch.tensor([[4.0, 4.0, 4.0]]), stats.mask, stats.ref_logp_sum)
    assert dpo_loss(tied, beta=0.1).loss.item() == 0.0  # no preference → only the (zero-weight) SFT term
    assert simpo_loss(tied, nll_weight=1.0).loss.item() == pytest.approx(1.0)


GROUP = {
    "messages": [{"role": "user", "content": "Is it okay to lie to a friend?"}],
    "responses": ["Yes, always.", "Gentle honesty protects trust better than a lie.", "Sometimes, if it is small."],
    "ratings": [3, 7, 5],
}


def tokenized_group(tokenizer, group=GROUP):
    prompt_ids = None
    responses = []
    for text in group["responses"]:
        prompt, completion = render(tokenizer, group["messages"], text)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        responses.append(completion_ids(tokenizer, completion))
    return {"prompt_ids": prompt_ids, "response_ids": responses, "ratings": [float(r) for r in group["ratings"]]}


def hand_nll(model, prompt_ids: list[int], response_ids: list[int]) -> float:
    """Token-mean NLL of the response, from one unpadded forward of prompt + response (no batching, no masks)."""
    ids = torch.tensor([prompt_ids + response_ids])
    logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    start = len(prompt_ids)
    return -sum(logp[start + t - 1, tok].item() for t, tok in enumerate(response_ids)) / len(response_ids)


def test_loss_on_a_fixed_tiny_model_equals_hand_computation(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    item = tokenized_group(tokenizer)
    other = tokenized_group(tokenizer, {**GROUP, "ratings": [4, 4, 2], "responses": ["No.", "Maybe.", "Lie!"]})
    batch = GroupCollator(tokenizer.pad_token_id, max_length=256, max_prompt_length=128)([item, other])
    with torch.no_grad():
        stats = response_stats(model, batch)
        out = stable_alignment_loss(stats.nll, stats.ratings, stats.mask, margin=1.0, lam=0.2, ties="include")
        flow = stable_alignment_loss(
            stats.nll, stats.ratings, stats.mask, margin=1.0, lam=0.2, max_flow=True, ties="include"
        )
        excluded = stable_alignment_loss(stats.nll, stats.ratings, stats.mask, margin=1.0, lam=0.2)
    l1 = [hand_nll(model, item["prompt_ids"], r) for r in item["response_ids"]]
    l2 = [hand_nll(model, other["prompt_ids"], r) for r in other["response_ids"]]
    assert stats.nll[0].tolist() == pytest.approx(l1, abs=1e-4)
    # group 1, unsorted [3, 7, 5]: b = 1; group 2, tie [4, 4, 2]: b = 0 (first)
    d1 = [l1[1] - l1[0] + 4 / 7, l1[1] - l1[2] + 2 / 7]
    d2 = [l2[0] - l2[1] + 0.0, l2[0] - l2[2] + 2 / 7]
    g1, g2 = l1[1] + 0.2 * max(0.0, sum(d1) / 2), l2[0] + 0.2 * max(0.0, sum(d2) / 2)
    assert out.loss.item() == pytest.approx((g1 + g2) / 2, abs=1e-4)
    f1, f2 = l1[1] + 0.2 * max(0.0, *d1), l2[0] + 0.2 * max(0.0, *d2)
    assert flow.loss.item() == pytest.approx((f1 + f2) / 2, abs=1e-4)
    # ties=exclude (the default): group 2's response tied with b (rating 4) is no j, only the rating-2 one is
    e2 = l2[0] + 0.2 * max(0.0, d2[1])
    assert excluded.loss.item() == pytest.approx((g1 + e2) / 2, abs=1e-4)
    # K = 1 on the model: the loss is the plain SFT NLL of that response
    single = GroupCollator(tokenizer.pad_token_id, 256, 128)(
        [{**item, "response_ids": item["response_ids"][1:2], "ratings": [7.0]}]
    )
    with torch.no_grad():
        s1 = response_stats(model, single)
    assert stable_alignment_loss(s1.nll, s1.ratings, s1.mask).loss.item() == pytest.approx(l1[1], abs=1e-4)


def test_training_steps_grow_the_gap_between_low_and_best(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    batch = GroupCollator(tokenizer.pad_token_id, 256, 128)([tokenized_group(tokenizer)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gaps = []
    for _ in range(8):
        out = stable_alignment_loss(response_stats(model, batch).nll, batch["ratings"], batch["present"], lam=1.0)
        gaps.append(out.parts["gap"])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert gaps[-1] > gaps[0] + 0.1, gaps
