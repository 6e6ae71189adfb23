"""Per-response log-likelihoods from padded forward passes over a collated batch (any HF causal LM).

Each trained token t of a response is predicted by the hidden state at position t − 1, except the first token of a
response, which is predicted by the last prompt token (in the shared-prompt layout the previous position belongs to
another response). Savings over the usual `model(..., labels=...)`:
- positions before the earliest predicting position never reach the vocabulary projection (`logits_to_keep`);
- a forward pre-hook on the output embedding projects only the predicting positions, so prompt and padding positions
  cost no `hidden × vocab` product and no `(batch, length, vocab)` tensor is built;
- `max_tokens` > 0 splits the rows, sorted by length, into chunks of at most that many padded tokens, so short rows
  are not padded to the longest row of the batch (one backward still covers all chunks);
- the shared-prompt layout (training/collator.py) forwards each prompt once for its K responses.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from training.collator import PADDING, PROMPT, GroupBatch, PackedRows
from training.losses import ResponseStats

# attention implementations that take a custom 4D mask as it is (the shared-prompt layout needs one)
CUSTOM_MASK_ATTENTION = ("sdpa", "eager")


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)  # DDP wrapper
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # peft


def _accepts(model: nn.Module, argument: str) -> bool:
    return argument in inspect.signature(_unwrap(model).forward).parameters


def attention_implementation(model: nn.Module) -> str | None:
    """The attention kernel the (unwrapped) model runs: sdpa, eager, flash_attention_2, ..."""
    return getattr(getattr(_unwrap(model), "config", None), "_attn_implementation", None)


def supports_shared_prompt(model: nn.Module) -> bool:
    """Whether the model can score the shared-prompt layout: custom 4D masks and explicit `position_ids`."""
    return attention_implementation(model) in CUSTOM_MASK_ATTENTION and _accepts(model, "position_ids")


def shared_prompt_mask(segment_ids: torch.Tensor, additive: bool) -> torch.Tensor:
    """`[B, 1, L, L]` mask: a prompt token sees the earlier prompt; a response token the prompt and its own past.

    Padding queries see themselves only (no empty softmax row). `additive`: 0 / −inf floats (eager attention) rather
    than booleans (sdpa).
    """
    length = segment_ids.shape[1]
    query, key = segment_ids[:, :, None], segment_ids[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = causal & (key != PADDING) & ((key == PROMPT) | (key == query))
    allowed |= torch.eye(length, dtype=torch.bool, device=segment_ids.device)
    allowed = allowed[:, None]
    if not additive:
        return allowed
    return torch.zeros(allowed.shape, device=allowed.device).masked_fill(~allowed, torch.finfo(torch.float32).min)


@contextlib.contextmanager
def _project_only(model: nn.Module, rows: torch.Tensor, positions: torch.Tensor, window: int) -> Iterator[None]:
    """While active, the output projection sees only the hidden states at (rows, positions): logits come out [N, V].

    `window` is the number of trailing positions the model hands to the projection (its `logits_to_keep`).
    """
    head = _unwrap(model).get_output_embeddings() if hasattr(_unwrap(model), "get_output_embeddings") else None
    if head is None:
        yield
        return

    def pre_hook(module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        if hidden.dim() == 3 and hidden.shape[1] == window:
            hidden = hidden[rows, positions]
        return (hidden, *args[1:])

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()


def _targets(chunk: PackedRows) -> tuple[torch.Tensor, ...]:
    """(row, position, predicting position, response index) of every trained token that has a predictor."""
    segments = chunk.segment_ids
    rows, cols = chunk.loss_mask.nonzero(as_tuple=True)
    rows, cols = rows[cols > 0], cols[cols > 0]
    prompt_length = (segments == PROMPT).sum(dim=1)
    continues = segments[rows, cols - 1] == segments[rows, cols]
    predictor = torch.where(continues, cols - 1, prompt_length[rows] - 1)
    keep = predictor >= 0
    rows, cols, predictor = rows[keep], cols[keep], predictor[keep]
    return rows, cols, predictor, chunk.response_offset[rows] + segments[rows, cols] - 1


def _forward_logps(model: nn.Module, chunk: PackedRows) -> tuple[torch.Tensor, torch.Tensor]:
    """One padded forward: (summed log-probability, trained-token count) per response of the whole batch."""
    input_ids, n_responses = chunk.input_ids, chunk.n_responses
    length = input_ids.shape[1]
    rows, cols, predictor, response = _targets(chunk)
    start = int(predictor.min()) if predictor.numel() else length - 1
    inputs: dict = {"input_ids": input_ids, "attention_mask": chunk.attention_mask, "use_cache": False}
    if chunk.position_ids is not None:  # shared-prompt layout
        mask = shared_prompt_mask(chunk.segment_ids, additive=attention_implementation(model) == "eager")
        inputs.update(position_ids=chunk.position_ids, attention_mask=mask)
    if trim := _accepts(model, "logits_to_keep"):
        inputs["logits_to_keep"] = length - start
    with _project_only(model, rows, predictor - start, length - start) if trim else contextlib.nullcontext():
        logits = model(**inputs).logits
    if logits.dim() == 3:  # the model (or a wrapper) did not pass through the hook: select here
        logits = logits[rows, predictor - (length - logits.shape[1])]
    token_nll = F.cross_entropy(logits.float(), input_ids[rows, cols], reduction="none")
    logp_sum = torch.zeros(n_responses, device=logits.device, dtype=torch.float32).index_add(0, response, -token_nll)
    count = torch.zeros(n_responses, device=input_ids.device, dtype=torch.long)
    return logp_sum, count.index_add(0, response, torch.ones_like(response))


def length_chunks(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Row indices sorted by length, cut into chunks whose padded size (rows × longest) stays within `max_tokens`."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if max_tokens <= 0:
        return [order]
    chunks: list[list[int]] = [[]]
    for i in order:
        if chunks[-1] and (len(chunks[-1]) + 1) * lengths[i] > max_tokens:
            chunks.append([])
        chunks[-1].append(i)
    return chunks


def sequence_logps(model: nn.Module, batch: PackedRows, max_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability, number of trained tokens) of each response, in the batch's response order."""
    rows = batch.input_ids
    if max_tokens <= 0 or rows.numel() <= max_tokens:
        return _forward_logps(model, batch)
    lengths = batch.attention_mask.sum(dim=1).tolist()
    parts = [
        _forward_logps(model, batch.take_rows(torch.tensor(chunk, device=rows.device), max(lengths[i] for i in chunk)))
        for chunk in length_chunks(lengths, max_tokens)
    ]
    return sum(s for s, _ in parts), sum(c for _, c in parts)


def to_grid(values: torch.Tensor, batch: GroupBatch) -> torch.Tensor:
    """Scatter per-response values onto the `[G, K]` grid of the batch."""
    grid = torch.zeros(batch.present.shape, device=values.device, dtype=values.dtype)
    return grid.index_put((batch.group_index, batch.slot_index), values)


def response_stats(
    model: nn.Module, batch: GroupBatch, reference: nn.Module | None = None, max_tokens: int = 0
) -> ResponseStats:
    """ℓ_i (token-mean NLL), s_i (summed log-prob) and ratings on the `[G, K]` grid; reference s_i when given."""
    logp_sum, count = sequence_logps(model, batch, max_tokens)
    nll = -logp_sum / count.clamp(min=1).to(logp_sum.dtype)
    return ResponseStats(
        nll=to_grid(nll, batch),
        logp_sum=to_grid(logp_sum, batch),
        ratings=batch.ratings.to(logp_sum.device),
        mask=batch.present.to(logp_sum.device),
        ref_logp_sum=None if reference is None else reference_logps(reference, batch, max_tokens),
    )


@torch.no_grad()
def reference_logps(reference: nn.Module, batch: GroupBatch, max_tokens: int = 0) -> torch.Tensor:
    """Summed log-probabilities under the frozen reference; a peft model serves as its own base (adapter off)."""
    inner = getattr(reference, "module", reference)
    with inner.disable_adapter() if hasattr(inner, "disable_adapter") else contextlib.nullcontext():
        return to_grid(sequence_logps(reference, batch, max_tokens)[0], batch)
