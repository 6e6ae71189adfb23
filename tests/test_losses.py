"""The loss family against hand computations: on fixed per-response NLLs and on a fixed tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from training.collator import GroupCollator
from training.data import completion_ids, render
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
    out = sa([1.0, 2.0, 1.2], [5, 7, 7])
    assert out.loss.item() == pytest.approx(2.0 + 0.2 * ((1.0 + 2 / 7) + 0.8) / 2, abs=1e-12)


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
        out = stable_alignment_loss(stats.nll, stats.ratings, stats.mask, margin=1.0, lam=0.2)
        flow = stable_alignment_loss(stats.nll, stats.ratings, stats.mask, margin=1.0, lam=0.2, max_flow=True)
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
