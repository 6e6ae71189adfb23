"""The loss family, one config switch apart (`loss=stable_alignment|sft|dpo|simpo`, see conf/loss/*.yaml).

Each loss is registered once, in conf.schema.training.LOSSES: a dataclass whose fields are its parameters (defaults
and checks; conf/loss/<name>.yaml says the same) and whose class variables say which responses it trains on and
whether it needs a reference model. `LOSSES` here adds the function that computes it.

Every loss is a pure function of per-response statistics laid out as a `[G, K]` grid (G groups = queries, K rated
responses each, `mask` marks the slots that hold a response with at least one trained token):

    ℓ_i  = token-mean negative log-likelihood of response y_i given the prompt x (prompt tokens masked)
    s_i  = summed log-probability of y_i given x (= −ℓ_i · |y_i|)
    r_i  = the rating of y_i on the 1..R scale

| loss               | equation (per group)                                                          | paper |
|--------------------|-------------------------------------------------------------------------------|-------|
| `stable_alignment` | b = argmax_i r_i (ties: first);  d_j = ℓ_b − ℓ_j + M·(r_b − r_j)/R            | [1]   |
|                    | J = {j ≠ b : r_j < r_b} (`ties=exclude`, default); {j ≠ b} (`ties=include`)   |       |
|                    | D = max(0, mean_{j∈J} d_j) (`max_flow`: max_{j∈J}); 0 if J = ∅; L = ℓ_b + λ·D |       |
| `sft`              | L = ℓ_b                                                                       | —     |
| `dpo`              | L = −log σ(β[(s_w − s_w^ref) − (s_l − s_l^ref)]) + α·ℓ_w                      | [2]   |
| `simpo`            | L = −log σ(β(−ℓ_w + ℓ_l) − γ) + α·ℓ_w                                         | [3]   |

`ties=exclude` leaves out responses rated the same as the best: they carry no preference, yet `include` pushes each
one down by ℓ_b − ℓ_j with zero margin (SPEC §4 read literally; a group whose ratings all tie then favours whichever response comes
first). With `exclude` such a group is plain SFT on b.

w = the best-rated and l = the worst-rated response of the group (pairwise losses train on that pair; a group whose
best and worst ratings tie carries no preference and contributes only its SFT/NLL term). The batch loss is the mean
over groups that hold at least one response.

[1] Liu et al., Training Socially Aligned Language Models on Simulated Social Interactions, arXiv:2305.16960
[2] Rafailov et al., Direct Preference Optimization, arXiv:2305.18290 (+SFT term as in RPO, arXiv:2404.19733)
[3] Meng et al., SimPO: Simple Preference Optimization with a Reference-Free Reward, arXiv:2405.14734 (+NLL as CPO,
    arXiv:2401.08417)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from conf.schema.training import LOSSES as LOSS_CONFIGS
from conf.schema.training import (
    SELECT_ALL,
    SELECT_BEST,
    SELECT_PAIR,
    DpoLoss,
    Loss,
    SftLoss,
    SimpoLoss,
    StableAlignmentLoss,
)

__all__ = ["LOSSES", "SELECT_ALL", "SELECT_BEST", "SELECT_PAIR", "LossOutput", "LossSpec", "ResponseStats", "TIES",
           "dpo_loss", "sft_loss", "simpo_loss", "stable_alignment_loss"]  # fmt: skip

TIES = StableAlignmentLoss.TIES  # stable_alignment: do responses tied with the best count among the j of D?


@dataclass
class ResponseStats:
    """Per-response statistics on a `[G, K]` grid; empty slots have `mask == False` (their values are ignored)."""

    nll: Tensor  # ℓ_i, token-mean NLL
    logp_sum: Tensor  # s_i, summed log-probability
    ratings: Tensor  # r_i
    mask: Tensor  # bool
    ref_logp_sum: Tensor | None = None  # s_i under the reference model (DPO only)


@dataclass
class LossOutput:
    """The scalar to back-propagate plus detached parts for logging."""

    loss: Tensor
    parts: dict[str, float] = field(default_factory=dict)


def _best_index(ratings: Tensor, mask: Tensor) -> Tensor:
    """b = argmax r over the valid slots of each group; torch.argmax returns the first maximum, so ties go first."""
    return torch.where(mask, ratings.float(), float("-inf")).argmax(dim=1)


def _worst_index(ratings: Tensor, mask: Tensor) -> Tensor:
    """l = argmin r over the valid slots (ties: first)."""
    return torch.where(mask, ratings.float(), float("inf")).argmin(dim=1)


def _pick(values: Tensor, index: Tensor) -> Tensor:
    return values.gather(1, index[:, None]).squeeze(1)


def _group_mean(values: Tensor, groups: Tensor) -> Tensor:
    """Mean over the groups that hold a response; 0 (with a gradient path) when none does."""
    weights = groups.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def stable_alignment_loss(
    nll: Tensor,
    ratings: Tensor,
    mask: Tensor | None = None,
    *,
    margin: float = StableAlignmentLoss.margin,
    lam: float = StableAlignmentLoss.lam,
    rating_scale: float = StableAlignmentLoss.rating_scale,
    max_flow: bool = StableAlignmentLoss.max_flow,
    ties: str = StableAlignmentLoss.ties,
) -> LossOutput:
    """SPEC §4: L = ℓ_b + λ·max(0, mean_j [ℓ_b − ℓ_j + M·(r_b − r_j)/R]) per group, averaged over groups.

    `nll` and `ratings` are `[G, K]` (or `[K]` for one group); j runs over the other valid responses with j's own
    rating, so the input need not be sorted. `ties="exclude"` keeps only the j rated strictly below the best (a group
    where none is gets D = 0); `"include"` keeps every j ≠ b. A group with one response (K = 1) is SFT.
    """
    if ties not in TIES:
        raise ValueError(f"ties={ties!r}: use include or exclude")
    mask = torch.ones_like(nll, dtype=torch.bool) if mask is None else mask.bool()
    if nll.dim() == 1:
        nll, ratings, mask = nll[None], ratings[None], mask[None]
    exact = ratings.float()  # ties are decided before a cast to a low-precision nll dtype could merge close ratings
    ratings = ratings.to(nll.dtype)
    nll = torch.where(mask, nll, torch.zeros_like(nll))  # NaN/garbage in empty slots never reaches the graph
    best = _best_index(exact, mask)
    nll_best, rating_best = _pick(nll, best), _pick(ratings, best)
    others = mask.clone()
    others[torch.arange(nll.shape[0], device=nll.device), best] = False
    if ties == "exclude":
        others &= exact < _pick(exact, best)[:, None]
    d = nll_best[:, None] - nll + margin * (rating_best[:, None] - ratings) / rating_scale
    count = others.sum(dim=1)
    if max_flow:
        pooled = torch.where(others, d, torch.full_like(d, float("-inf"))).amax(dim=1)
        pooled = torch.where(count > 0, pooled, torch.zeros_like(pooled))
    else:
        pooled = torch.where(others, d, torch.zeros_like(d)).sum(dim=1) / count.clamp(min=1)
    penalty = pooled.clamp(min=0.0)
    groups = mask.any(dim=1)
    loss = _group_mean(nll_best + lam * penalty, groups)
    contrastive = groups & (count > 0)
    worst = _worst_index(ratings, mask)
    parts = {
        "nll_best": _group_mean(nll_best, groups).item(),
        "nll_low": _group_mean(_pick(nll, worst), contrastive).item(),
        "penalty": _group_mean(penalty, groups).item(),
        "active_margin_frac": _group_mean((pooled > 0).to(nll.dtype), contrastive).item(),
    }
    parts["gap"] = parts["nll_low"] - parts["nll_best"] if contrastive.any() else 0.0
    return LossOutput(loss, parts)


def sft_loss(nll: Tensor, ratings: Tensor, mask: Tensor | None = None) -> LossOutput:
    """L = ℓ_b: supervised fine-tuning on the best-rated response of each group."""
    return stable_alignment_loss(nll, ratings, mask, lam=0.0)


def _pair(stats: ResponseStats) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Indices of the best (w) and worst (l) response, the groups present and the groups with a real preference."""
    mask = stats.mask.bool()
    w, lo = _best_index(stats.ratings, mask), _worst_index(stats.ratings, mask)
    groups = mask.any(dim=1)
    preferred = groups & (_pick(stats.ratings.float(), w) > _pick(stats.ratings.float(), lo))
    return w, lo, groups, preferred


def _pair_loss(
    logits: Tensor, nll_w: Tensor, groups: Tensor, preferred: Tensor, nll_weight: float, **parts: Tensor
) -> LossOutput:
    """L = −log σ(logits) over the groups with a preference + `nll_weight`·ℓ_w over every group; the logged parts are
    `preference`, `nll_best` and the loss's own `parts`."""
    preference = _group_mean(-F.logsigmoid(logits), preferred)
    nll_best = _group_mean(nll_w, groups)
    parts = {"preference": preference, "nll_best": nll_best, **parts}
    return LossOutput(preference + nll_weight * nll_best, {key: value.item() for key, value in parts.items()})


def dpo_loss(stats: ResponseStats, *, beta: float = DpoLoss.beta, sft_weight: float = DpoLoss.sft_weight) -> LossOutput:
    """L = −log σ(β[(s_w − s_w^ref) − (s_l − s_l^ref)]) + α·ℓ_w on the best-vs-worst pair of each group."""
    if stats.ref_logp_sum is None:
        raise ValueError("dpo needs reference log-probabilities (ref_logp_sum)")
    w, lo, groups, preferred = _pair(stats)
    gain = torch.where(stats.mask, stats.logp_sum - stats.ref_logp_sum, torch.zeros_like(stats.logp_sum))  # s − s^ref
    logits = beta * (_pick(gain, w) - _pick(gain, lo))
    nll_w = _pick(torch.where(stats.mask, stats.nll, torch.zeros_like(stats.nll)), w)
    margin = _group_mean(logits / beta, preferred)
    accuracy = _group_mean((logits > 0).to(logits.dtype), preferred)
    return _pair_loss(logits, nll_w, groups, preferred, sft_weight, reward_margin=margin, reward_accuracy=accuracy)


def simpo_loss(
    stats: ResponseStats,
    *,
    beta: float = SimpoLoss.beta,
    gamma: float = SimpoLoss.gamma,
    nll_weight: float = SimpoLoss.nll_weight,
) -> LossOutput:
    """L = −log σ(β(ℓ_l − ℓ_w) − γ) + α·ℓ_w: reference-free, length-normalised margin plus NLL (CPO-SimPO)."""
    w, lo, groups, preferred = _pair(stats)
    nll = torch.where(stats.mask, stats.nll, torch.zeros_like(stats.nll))
    nll_w, nll_l = _pick(nll, w), _pick(nll, lo)
    logits = beta * (nll_l - nll_w) - gamma
    accuracy = _group_mean((nll_l > nll_w).to(nll.dtype), preferred)
    low = _group_mean(nll_l, preferred)
    return _pair_loss(logits, nll_w, groups, preferred, nll_weight, nll_low=low, reward_accuracy=accuracy)


class LossSpec(NamedTuple):
    """A loss as the trainer sees it: which responses it forwards and whether it needs a reference model (its config
    class in conf.schema.training.LOSSES says both) and the function that computes it from the statistics and that
    config."""

    select: str
    needs_reference: bool
    compute: Callable[[ResponseStats, Any], LossOutput]


_COMPUTE: dict[type[Loss], Callable[[ResponseStats, Any], LossOutput]] = {
    StableAlignmentLoss: lambda s, p: stable_alignment_loss(s.nll, s.ratings, s.mask, **p.params()),
    SftLoss: lambda s, p: sft_loss(s.nll, s.ratings, s.mask),
    DpoLoss: lambda s, p: dpo_loss(s, **p.params()),
    SimpoLoss: lambda s, p: simpo_loss(s, **p.params()),
}
# Every registered loss with its function (a loss registered without one fails here, at import).
LOSSES: dict[str, LossSpec] = {
    name: LossSpec(config.select, config.needs_reference, _COMPUTE[config]) for name, config in LOSS_CONFIGS.items()
}
