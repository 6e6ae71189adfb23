"""Per-response log-likelihoods from padded forward passes over a collated batch (any HF causal LM).

Three savings over the usual `model(..., labels=...)`:
- positions before the earliest response token never reach the vocabulary projection (`logits_to_keep`);
- a forward pre-hook on the output embedding projects only the positions whose next token is trained, so prompt
  and padding positions cost no `hidden × vocab` product and no `(batch, length, vocab)` tensor is built;
- `max_tokens` > 0 splits the rows, sorted by length, into chunks of at most that many padded tokens, so short rows
  are not padded to the longest row of the batch (one backward still covers all chunks).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from training.losses import ResponseStats


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)  # DDP wrapper
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # peft


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(_unwrap(model).forward).parameters


@contextlib.contextmanager
def _project_only(model: nn.Module, select: torch.Tensor) -> Iterator[None]:
    """While active, the output projection sees only hidden states at `select` ([B, L] bool): logits come out [N, V]."""
    head = _unwrap(model).get_output_embeddings() if hasattr(_unwrap(model), "get_output_embeddings") else None
    if head is None:
        yield
        return

    def pre_hook(module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        return (hidden[select] if hidden.dim() == 3 and hidden.shape[:2] == select.shape else hidden, *args[1:])

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()


def _forward_logps(model: nn.Module, input_ids: torch.Tensor, attention: torch.Tensor, loss_mask: torch.Tensor):
    """One padded forward: (summed log-probability, trained-token count) per row."""
    length = input_ids.shape[1]
    rows_with_target = loss_mask.any(dim=1)
    first = int(loss_mask.float().argmax(dim=1)[rows_with_target].min()) if rows_with_target.any() else length - 1
    start = max(first - 1, 0)  # the logit at position t predicts token t + 1
    kwargs = {"logits_to_keep": length - start} if _accepts_logits_to_keep(model) else {}
    mask = loss_mask[:, start + 1 :]  # targets, aligned with predicting positions start .. length - 2
    select = F.pad(mask, (0, 1))  # predicting positions within the kept window (the last one predicts nothing)
    with _project_only(model, select if kwargs else select.new_zeros(0)):
        logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False, **kwargs).logits
    if logits.dim() == 3:  # the model (or a wrapper) did not pass through the hook: select here
        logits = logits[:, -(length - start) :][select]
    token_nll = F.cross_entropy(logits.float(), input_ids[:, start + 1 :][mask], reduction="none")
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(mask)[mask]
    logp_sum = torch.zeros(input_ids.shape[0], device=logits.device, dtype=torch.float32)
    return logp_sum.index_add(0, rows, -token_nll), mask.sum(dim=1)


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


def sequence_logps(
    model: nn.Module, batch: dict[str, torch.Tensor], max_tokens: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability, number of trained tokens) of the response in each row."""
    input_ids, attention, loss_mask = batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
    if max_tokens <= 0 or input_ids.numel() <= max_tokens:
        return _forward_logps(model, input_ids, attention, loss_mask)
    lengths = attention.sum(dim=1).tolist()
    sums, counts, order = [], [], []
    for chunk in length_chunks(lengths, max_tokens):
        index = torch.tensor(chunk, device=input_ids.device)
        width = max(lengths[i] for i in chunk)
        s, c = _forward_logps(model, input_ids[index, :width], attention[index, :width], loss_mask[index, :width])
        sums.append(s)
        counts.append(c)
        order += chunk
    inverse = torch.empty(len(order), dtype=torch.long, device=input_ids.device)
    inverse[torch.tensor(order, device=input_ids.device)] = torch.arange(len(order), device=input_ids.device)
    return torch.cat(sums)[inverse], torch.cat(counts)[inverse]


def to_grid(values: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Scatter per-row values onto the `[G, K]` grid of the batch."""
    grid = torch.zeros(batch["present"].shape, device=values.device, dtype=values.dtype)
    return grid.index_put((batch["group_index"], batch["slot_index"]), values)


def response_stats(
    model: nn.Module, batch: dict[str, torch.Tensor], reference: nn.Module | None = None, max_tokens: int = 0
) -> ResponseStats:
    """ℓ_i (token-mean NLL), s_i (summed log-prob) and ratings on the `[G, K]` grid; reference s_i when given."""
    logp_sum, count = sequence_logps(model, batch, max_tokens)
    nll = -logp_sum / count.clamp(min=1).to(logp_sum.dtype)
    return ResponseStats(
        nll=to_grid(nll, batch),
        logp_sum=to_grid(logp_sum, batch),
        ratings=batch["ratings"].to(logp_sum.device),
        mask=batch["present"].to(logp_sum.device),
        ref_logp_sum=None if reference is None else reference_logps(reference, batch, max_tokens),
    )


@torch.no_grad()
def reference_logps(reference: nn.Module, batch: dict[str, torch.Tensor], max_tokens: int = 0) -> torch.Tensor:
    """Summed log-probabilities under the frozen reference; a peft model serves as its own base (adapter off)."""
    inner = getattr(reference, "module", reference)
    if hasattr(inner, "disable_adapter"):
        with inner.disable_adapter():
            return to_grid(sequence_logps(reference, batch, max_tokens)[0], batch)
    return to_grid(sequence_logps(reference, batch, max_tokens)[0], batch)
