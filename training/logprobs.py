"""Per-response log-likelihoods from one forward pass over a collated batch (any HF causal LM).

Logits are computed only from the earliest response position on (`logits_to_keep`, when the model supports it), and
the cross-entropy only at trained positions, so the prompt costs no vocabulary projection.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from training.losses import ResponseStats


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    inner = getattr(model, "module", model)  # DDP wrapper
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # peft
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def sequence_logps(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability, number of trained tokens) of the response in each row."""
    input_ids, loss_mask = batch["input_ids"], batch["loss_mask"]
    length = input_ids.shape[1]
    rows_with_target = loss_mask.any(dim=1)
    first = int(loss_mask.float().argmax(dim=1)[rows_with_target].min()) if rows_with_target.any() else length - 1
    start = max(first - 1, 0)  # the logit at position t predicts token t + 1
    kwargs = {"logits_to_keep": length - start} if _accepts_logits_to_keep(model) else {}
    logits = model(input_ids=input_ids, attention_mask=batch["attention_mask"], use_cache=False, **kwargs).logits
    logits = logits[:, -(length - start) :]
    predicted = logits[:, :-1]
    targets = input_ids[:, start + 1 :]
    mask = loss_mask[:, start + 1 :]
    token_nll = F.cross_entropy(predicted[mask].float(), targets[mask], reduction="none")
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(mask)[mask]
    logp_sum = torch.zeros(input_ids.shape[0], device=logits.device, dtype=torch.float32)
    logp_sum = logp_sum.index_add(0, rows, -token_nll)
    return logp_sum, mask.sum(dim=1)


def to_grid(values: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Scatter per-row values onto the `[G, K]` grid of the batch."""
    grid = torch.zeros(batch["present"].shape, device=values.device, dtype=values.dtype)
    return grid.index_put((batch["group_index"], batch["slot_index"]), values)


def response_stats(
    model: nn.Module, batch: dict[str, torch.Tensor], reference: nn.Module | None = None
) -> ResponseStats:
    """ℓ_i (token-mean NLL), s_i (summed log-prob) and ratings on the `[G, K]` grid; reference s_i when given."""
    logp_sum, count = sequence_logps(model, batch)
    nll = -logp_sum / count.clamp(min=1).to(logp_sum.dtype)
    return ResponseStats(
        nll=to_grid(nll, batch),
        logp_sum=to_grid(logp_sum, batch),
        ratings=batch["ratings"].to(logp_sum.device),
        mask=batch["present"].to(logp_sum.device),
        ref_logp_sum=None if reference is None else reference_logps(reference, batch),
    )


@torch.no_grad()
def reference_logps(reference: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed log-probabilities under the frozen reference; a peft model serves as its own base (adapter off)."""
    inner = getattr(reference, "module", reference)
    if hasattr(inner, "disable_adapter"):
        with inner.disable_adapter():
            return to_grid(sequence_logps(reference, batch)[0], batch)
    return to_grid(sequence_logps(reference, batch)[0], batch)
