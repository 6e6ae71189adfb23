"""The batched collator: G groups × K responses in one padded forward, inference chat template, masks, EOS, truncation."""

from __future__ import annotations

import pytest
import torch

from training.collator import CUT_KEYS, GroupCollator, select_responses
from training.dataset import completion_ids, render
from training.logprobs import response_stats
from training.losses import SELECT_ALL, SELECT_BEST, SELECT_PAIR, stable_alignment_loss

MESSAGES = [{"role": "user", "content": "Should people be judged by their accent?"}]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def item(tokenizer, responses: list[str], ratings: list[float]) -> dict:
    encoded = [render(tokenizer, MESSAGES, r) for r in responses]
    return {
        "prompt_ids": tokenizer(encoded[0][0], add_special_tokens=False)["input_ids"],
        "response_ids": [completion_ids(tokenizer, completion) for _, completion in encoded],
        "ratings": ratings,
    }


def test_prompt_is_rendered_exactly_as_at_inference_and_eos_is_trained(tokenizer):
    prompt, completion = render(tokenizer, MESSAGES, "No, never.")
    # agents/backends/hf_local.py and training/eval render prompts this way before generating or scoring
    inference = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt == inference and prompt.endswith("<|im_start|>assistant\n")
    ids = completion_ids(tokenizer, completion)
    assert ids[-1] == tokenizer.eos_token_id  # <|im_end|> is a target; the template's trailing "\n" is not
    assert tokenizer.decode(ids[:-1]) == "No, never."


def test_groups_times_responses_in_one_padded_batch(tokenizer):
    a = item(tokenizer, ["No.", "No; an accent says nothing about ability.", "Yes."], [5, 7, 2])
    b = item(tokenizer, ["Judging by accent is unfair and lazy.", "Sure."], [6, 1])
    batch = GroupCollator(tokenizer.pad_token_id, max_length=128, max_prompt_length=64)([a, b])
    assert batch["input_ids"].shape[0] == 5  # 3 + 2 rows, one forward
    assert batch["group_index"].tolist() == [0, 0, 0, 1, 1] and batch["slot_index"].tolist() == [0, 1, 2, 0, 1]
    assert batch["present"].tolist() == [[True, True, True], [True, True, False]]
    assert batch["ratings"].tolist() == [[5, 7, 2], [6, 1, 0]]
    p = len(a["prompt_ids"])
    for row, response in zip(range(3), a["response_ids"], strict=True):
        ids, mask = batch["input_ids"][row], batch["loss_mask"][row]
        assert ids[:p].tolist() == a["prompt_ids"]  # prompt masked
        assert not mask[:p].any()
        assert mask.nonzero().flatten().tolist() == list(range(p, p + len(response)))  # response + EOS trained
        assert ids[mask].tolist() == response and ids[mask][-1] == tokenizer.eos_token_id
        assert batch["attention_mask"][row].sum() == p + len(response)  # padding is not attended nor trained


def test_prompt_keeps_its_end_and_response_is_cut_to_the_room_left(tokenizer):
    a = item(tokenizer, ["word " * 40], [4])
    batch = GroupCollator(tokenizer.pad_token_id, max_length=30, max_prompt_length=20)([a])
    assert batch["input_ids"].shape[1] == 30
    assert batch["input_ids"][0, :20].tolist() == a["prompt_ids"][-20:]
    assert batch["loss_mask"][0].sum() == 10


@pytest.mark.parametrize("share_prompt", [False, True])
def test_a_response_truncated_to_nothing_gives_no_nan(tokenizer, tiny_model_dir, share_prompt):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    long_prompt = item(tokenizer, ["A fine answer."], [7])
    long_prompt["prompt_ids"] = long_prompt["prompt_ids"] * 3
    ok = item(tokenizer, ["No.", "Yes."], [6, 2])
    room = len(long_prompt["prompt_ids"])
    batch = GroupCollator(tokenizer.pad_token_id, room, room, share_prompt=share_prompt)([long_prompt, ok])
    assert batch["present"].tolist() == [[False, False], [True, True]]
    stats = response_stats(model, batch)
    out = stable_alignment_loss(stats.nll, stats.ratings, stats.mask)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # every response truncated away: a zero loss that still back-propagates
    empty = GroupCollator(tokenizer.pad_token_id, room, room, share_prompt=share_prompt)([long_prompt])
    stats = response_stats(model, empty)
    out = stable_alignment_loss(stats.nll, stats.ratings, stats.mask)
    assert out.loss.item() == 0.0 and out.loss.requires_grad


def test_selection_per_loss():
    ratings = [3, 7, 5, 7, 3]
    assert select_responses(ratings, SELECT_ALL) == [0, 1, 2, 3, 4]
    assert select_responses(ratings, SELECT_BEST) == [1]  # ties: first
    assert select_responses(ratings, SELECT_PAIR) == [1, 0]  # best, worst (ties: first)
    assert select_responses([4, 4], SELECT_PAIR) == [0]  # no preference: only the SFT term remains


def test_length_chunked_forward_equals_one_padded_forward(tokenizer, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from training.logprobs import length_chunks, sequence_logps

    assert length_chunks([5, 9, 3, 9], 18) == [[2, 0], [1, 3]]
    assert length_chunks([5, 9, 3], 0) == [[2, 0, 1]]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    a = item(tokenizer, ["No.", "An accent says nothing about ability or character at all.", "Yes."], [5, 7, 2])
    b = item(tokenizer, ["Judging by accent is unfair.", "Sure."], [6, 1])
    batch = GroupCollator(tokenizer.pad_token_id, max_length=128, max_prompt_length=64)([a, b])
    whole, count = sequence_logps(model, batch)
    grad_whole = torch.autograd.grad(whole.sum(), model.model.layers[0].mlp.up_proj.weight)[0]
    chunked, count2 = sequence_logps(model, batch, max_tokens=2 * batch["attention_mask"].sum(1).max().item())
    grad_chunked = torch.autograd.grad(chunked.sum(), model.model.layers[0].mlp.up_proj.weight)[0]
    assert count.tolist() == count2.tolist()
    assert torch.allclose(whole, chunked, atol=1e-4)
    assert torch.allclose(grad_whole, grad_chunked, atol=1e-5)


def test_shared_prompt_layout_puts_a_group_in_one_row(tokenizer):
    a = item(tokenizer, ["No.", "No; an accent says nothing about ability.", "Yes."], [5, 7, 2])
    b = item(tokenizer, ["Judging by accent is unfair and lazy.", "Sure."], [6, 1])
    batch = GroupCollator(tokenizer.pad_token_id, max_length=128, max_prompt_length=64, share_prompt=True)([a, b])
    assert batch["input_ids"].shape[0] == 2  # one row per group: the prompt once, then its responses
    assert batch["response_offset"].tolist() == [0, 3]
    p = len(a["prompt_ids"])
    row, segments, positions = batch["input_ids"][0], batch["segment_ids"][0], batch["position_ids"][0]
    assert row[:p].tolist() == a["prompt_ids"] and (segments[:p] == 0).all()
    at = p
    for k, response in enumerate(a["response_ids"]):
        assert row[at : at + len(response)].tolist() == response
        assert (segments[at : at + len(response)] == k + 1).all()
        assert positions[at : at + len(response)].tolist() == list(range(p, p + len(response)))  # as if alone
        at += len(response)
    assert batch["loss_mask"][0].sum() == at - p and batch["attention_mask"][0].sum() == at


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_shared_prompt_scores_equal_one_row_per_response(tokenizer, tiny_model_dir, attention):
    """Prefix sharing changes the work, not the result: log-likelihoods and gradients match the plain layout."""
    from transformers import AutoModelForCausalLM

    from training.logprobs import sequence_logps, supports_shared_prompt

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attention)
    assert supports_shared_prompt(model)
    long_prompt = item(tokenizer, ["A fine answer."], [7])
    long_prompt["prompt_ids"] = long_prompt["prompt_ids"] * 3
    groups = [
        item(tokenizer, ["No.", "An accent says nothing about ability or character at all.", "Yes."], [5, 7, 2]),
        long_prompt,  # its response is truncated to nothing
        item(tokenizer, ["Judging by accent is unfair.", "Sure."], [6, 1]),
    ]
    room = len(long_prompt["prompt_ids"])
    weight = model.model.layers[0].self_attn.q_proj.weight
    results = {}
    for share, max_tokens in [(False, 0), (True, 0), (True, 3 * room)]:
        batch = GroupCollator(tokenizer.pad_token_id, room, room, share_prompt=share)(groups)
        logps, count = sequence_logps(model, batch, max_tokens=max_tokens)
        results[share, max_tokens] = logps, count, torch.autograd.grad(logps.sum(), weight)[0]
    plain_logps, plain_count, plain_grad = results[False, 0]
    assert plain_count.tolist()[3] == 0 and min(plain_count.tolist()[:3]) > 0
    for logps, count, grad in (results[True, 0], results[True, 3 * room]):
        assert count.tolist() == plain_count.tolist()
        assert torch.allclose(logps, plain_logps, atol=1e-4), (logps, plain_logps)
        assert torch.allclose(grad, plain_grad, atol=1e-5)


def realignment_group(tokenizer) -> dict:
    """A tokenized realignment group as sa-build-data writes it: long feedback, then a short revision."""
    from datasets import Dataset

    from training.build_data import realignment_output
    from training.dataset import tokenize_groups

    feedback = [(6.0, "Clear and kind. " * 12), (2.0, "Too vague about the accent question. " * 8)]
    text = realignment_output(feedback, "No: an accent says nothing about ability.")
    responses = [
        {"text": text, "rating": 6.0, "kind": "realignment", "source": "realignment"},
        {"text": "An accent is no measure of a person. " * 20, "rating": 3.0, "kind": "realignment"},
    ]
    rows = Dataset.from_list([{"messages": MESSAGES, "responses": responses, "stage": 0, "kind": "realignment"}])
    return tokenize_groups(rows, tokenizer)[0]


def test_the_builder_writes_the_revision_header_the_trainer_protects():
    from training.build_data import realignment_output
    from training.dataset import REVISION_HEADER

    text = realignment_output([(5.0, "Fine."), (2.0, "Rude.")], "  A kinder answer.  ")
    assert text.startswith("Feedback:\n") and text.endswith(REVISION_HEADER + "A kinder answer.")


def test_a_realignment_target_loses_its_feedback_before_its_revision(tokenizer):
    group = realignment_group(tokenizer)
    target, plain = group["response_ids"]
    at = group["protect_from"][0]
    revision = target[at:]
    assert tokenizer.decode(revision).startswith("\n\nRevised response: No: an accent")
    assert revision[-1] == tokenizer.eos_token_id and group["protect_from"][1] == len(plain)  # plain: nothing kept
    prompt = len(group["prompt_ids"])
    room = len(revision) + 10  # the revision fits, the whole feedback does not
    collator = GroupCollator(tokenizer.pad_token_id, prompt + room, prompt)
    batch = collator([{**group, "ratings": [6.0, 3.0]}])
    kept = [batch["input_ids"][row][batch["loss_mask"][row]].tolist() for row in range(2)]
    assert kept[0] == target[:10] + revision  # the feedback's start, then the whole revision and its EOS
    assert kept[1] == plain[:room] and kept[1][-1] != tokenizer.eos_token_id  # a plain response loses its end
    cut = dict(zip(CUT_KEYS, batch["cut"].tolist(), strict=True))
    assert cut == {
        "prompts": 1, "prompts_cut": 0, "responses": 2, "responses_cut": 2, "responses_lost_end": 1, "feedback_cut": 1,
    }  # fmt: skip
    assert collator.scan([group]) == cut  # the data-wide count (every response) agrees
    # too little room even for the revision: it is cut from its end like any response, and counted as such
    tight = GroupCollator(tokenizer.pad_token_id, prompt + len(revision) - 1, prompt)([{**group, "ratings": [6, 3]}])
    assert tight["input_ids"][0][tight["loss_mask"][0]].tolist() == target[: len(revision) - 1]
    assert dict(zip(CUT_KEYS, tight["cut"].tolist(), strict=True))["responses_lost_end"] == 2


def test_a_cut_prompt_is_counted(tokenizer):
    a = item(tokenizer, ["No."], [4])
    batch = GroupCollator(tokenizer.pad_token_id, max_length=64, max_prompt_length=5)([a, a])
    cut = dict(zip(CUT_KEYS, batch["cut"].tolist(), strict=True))
    assert (cut["prompts"], cut["prompts_cut"], cut["responses_cut"]) == (2, 2, 0)
