"""Batch G groups × K responses into one right-padded forward pass.

Two layouts, the same per-response log-likelihoods (tests/test_training_collator.py checks they agree):
- one row per response, `prompt + response` (`share_prompt=False`): works with every attention implementation;
- one row per group, `prompt + response_1 + … + response_K` (`share_prompt=True`, prefix sharing): the prompt is
  forwarded once instead of K times. A 4D attention mask lets each response see the prompt and its own earlier
  tokens only, and `position_ids` restart every response right after the prompt, so response k is scored exactly as
  if it followed the prompt alone (needs an attention implementation that takes a custom mask: sdpa or eager).

A batch is a `PackedRows` (what `training.logprobs` scores; sa-eval's choices too) or, from `GroupCollator`, a
`GroupBatch` (plus the `[G, K]` grid the loss reads). `segment_ids` tell the parts apart (0 prompt, k + 1 response k,
-1 padding); `loss_mask` marks the response tokens
(EOS included) whose log-probability is trained; prompt and padding are masked by position, never by pad id
(SmolLM2's pad token is its EOS). A response truncated to nothing has no trained token and `present == False`, so
the loss ignores it (no 0/0, no NaN).

Truncation: a prompt keeps its last `max_prompt_length` tokens; each response gets the rest of `max_length`. A
response that does not fit loses its end (and its end-of-turn token), except that a realignment target ("Feedback: …"
then the revision, see `training.dataset.REVISION_HEADER`) loses the end of its feedback first and keeps its revision
and end-of-turn token whole when they fit. Every batch counts what was cut (`cut`: see `CUT_KEYS`); sa-train logs
the counts and puts them in its summary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import torch

from training.losses import SELECT_ALL, SELECT_BEST, SELECT_PAIR

PROMPT, PADDING = 0, -1
# What `GroupCollator` counts per batch: prompts and trained responses, those cut, the responses that lost their end
# (end-of-turn token), and the realignment targets whose feedback was cut so that their revision stays whole.
CUT_KEYS = ("prompts", "prompts_cut", "responses", "responses_cut", "responses_lost_end", "feedback_cut")
ROW_FIELDS = ("input_ids", "attention_mask", "loss_mask", "segment_ids", "position_ids")  # one row per [R, L] entry
Batch = TypeVar("Batch", bound="PackedRows")


@dataclass(kw_only=True)
class PackedRows:
    """Rows `prompt + response_1 + … + response_k`, right-padded for one forward pass: R rows of length L holding N
    responses, numbered in "response order" (row by row, then along each row)."""

    input_ids: torch.Tensor  # [R, L] token ids, the pad id after each row's end
    attention_mask: torch.Tensor  # [R, L] 1 on real tokens, 0 on padding
    loss_mask: torch.Tensor  # [R, L] bool: the response tokens (the scored ones)
    segment_ids: torch.Tensor  # [R, L] PROMPT, k + 1 on the row's response k, PADDING
    response_offset: torch.Tensor  # [R] the response-order index of each row's first response
    group_index: torch.Tensor  # [N] the group of each response (its row of the [G, K] grid)
    position_ids: torch.Tensor | None = None  # [R, L] restarting after the prompt: the shared-prompt layout only

    @property
    def n_responses(self) -> int:
        return len(self.group_index)

    def to(self: Batch, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch on `device` (what `accelerate.utils.send_to_device` calls)."""
        moved = {
            f.name: value.to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    def take_rows(self, index: torch.Tensor, width: int) -> PackedRows:
        """Rows `index`, cut to their first `width` positions (responses keep their batch-wide numbering)."""
        rows = {name: value[index, :width] for name in ROW_FIELDS if (value := getattr(self, name)) is not None}
        return PackedRows(**rows, response_offset=self.response_offset[index], group_index=self.group_index)

    def __getitem__(self, name: str) -> Any:
        """`batch["input_ids"]`: read access by name, for scripts written when batches were dicts."""
        return getattr(self, name)


@dataclass(kw_only=True)
class GroupBatch(PackedRows):
    """`GroupCollator`'s batch: packed rows plus the `[G, K]` grid of the groups (K: the most responses picked)."""

    slot_index: torch.Tensor  # [N] the slot of each response (its column of the grid)
    ratings: torch.Tensor  # [G, K] float; 0 in empty slots
    present: torch.Tensor  # [G, K] bool: a response with at least one trained token
    cut: torch.Tensor  # [len(CUT_KEYS)] what truncation cut in this batch


def cut_response(response: list[int], protect_from: int, room: int) -> tuple[list[int], bool, bool]:
    """(kept tokens, lost its end, feedback cut): `response[protect_from:]` is kept whole when it fits in `room`
    (the tokens before it are cut from their end), else the response keeps its first `room` tokens."""
    if len(response) <= room:
        return response, False, False
    tail = response[protect_from:]
    if tail and len(tail) <= room:
        return response[: room - len(tail)] + tail, False, True
    return response[:room], True, False


def select_responses(ratings: list[float], select: str) -> list[int]:
    """Indices a loss needs: all; the best (ties: first); or best then worst (ties: first), when they differ."""
    if select == SELECT_ALL or len(ratings) <= 1:
        return list(range(len(ratings)))
    best = max(range(len(ratings)), key=lambda i: (ratings[i], -i))
    if select == SELECT_BEST:
        return [best]
    if select == SELECT_PAIR:
        worst = min(range(len(ratings)), key=lambda i: (ratings[i], i))
        return [best] if worst == best else [best, worst]
    raise ValueError(f"unknown selection {select!r}")


@dataclass
class GroupCollator:
    """Callable collator for a `DataLoader` over `GroupDataset` items."""

    pad_token_id: int
    max_length: int = 480
    max_prompt_length: int = 320
    select: str = SELECT_ALL
    share_prompt: bool = False

    def __call__(self, groups: list[dict[str, Any]]) -> GroupBatch:
        chosen = [select_responses(group["ratings"], self.select) for group in groups]
        prompts, responses, counts = zip(*map(self.truncate, groups, chosen), strict=True)
        group_index = [g for g, rs in enumerate(responses) for _ in rs]
        if self.share_prompt:
            rows = list(zip(prompts, responses, strict=True))
        else:
            rows = [(prompts[g], [r]) for g, rs in enumerate(responses) for r in rs]
        packed = pad_rows(rows, self.pad_token_id, positions=self.share_prompt, group_index=group_index)
        slot_index = torch.tensor([k for rs in responses for k in range(len(rs))], dtype=torch.long)
        grid = (packed.group_index, slot_index)  # the [G, K] grid: response n sits at (its group, its slot)
        shape = (len(groups), max((len(c) for c in chosen), default=1))
        ratings = [float(group["ratings"][j]) for group, picked in zip(groups, chosen, strict=True) for j in picked]
        present = torch.tensor([len(r) > 0 for rs in responses for r in rs], dtype=torch.bool)
        return GroupBatch(
            **vars(packed),
            slot_index=slot_index,
            ratings=torch.zeros(shape).index_put_(grid, torch.tensor(ratings)),
            present=torch.zeros(shape, dtype=torch.bool).index_put_(grid, present),
            cut=torch.tensor([sum(c[key] for c in counts) for key in CUT_KEYS], dtype=torch.long),
        )

    def truncate(self, group: dict[str, Any], picked: list[int]) -> tuple[list[int], list[list[int]], dict[str, int]]:
        """The kept prompt, the kept `picked` responses and the `CUT_KEYS` counts of one group."""
        prompt = list(group["prompt_ids"])[-self.max_prompt_length :] if self.max_prompt_length > 0 else []
        room = max(0, self.max_length - len(prompt))
        protect = group.get("protect_from") or [len(ids) for ids in group["response_ids"]]
        counts = dict.fromkeys(CUT_KEYS, 0) | {"prompts": 1, "responses": len(picked)}
        counts["prompts_cut"] = int(len(prompt) < len(group["prompt_ids"]))
        kept = []
        for j in picked:
            response = list(group["response_ids"][j])
            ids, lost_end, feedback_cut = cut_response(response, int(protect[j]), room)
            kept.append(ids)
            counts["responses_cut"] += len(ids) < len(response)
            counts["responses_lost_end"] += lost_end
            counts["feedback_cut"] += feedback_cut
        return prompt, kept, counts

    def scan(self, groups: Any) -> dict[str, int]:
        """What truncation cuts over a whole tokenized dataset: every response of every group (before K-sampling)."""
        counts = [self.truncate(group, list(range(len(group["response_ids"]))))[2] for group in groups]
        return {key: sum(c[key] for c in counts) for key in CUT_KEYS}


def pad_rows(
    rows: list[tuple[list[int], list[list[int]]]], pad_id: int, positions: bool, group_index: list[int] | None = None
) -> PackedRows:
    """Right-padded `prompt + responses…` rows with their masks, segment ids and (if `positions`) restarting
    positions. `group_index`: the group of each response (default: its row, one group per row)."""
    longest = max(len(p) + sum(map(len, rs)) for p, rs in rows)
    shape = (len(rows), longest)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    segment_ids = torch.full(shape, PADDING, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    for i, (prompt, responses) in enumerate(rows):
        input_ids[i, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        segment_ids[i, : len(prompt)] = PROMPT
        position_ids[i, : len(prompt)] = torch.arange(len(prompt))
        at = len(prompt)
        for k, response in enumerate(responses):
            input_ids[i, at : at + len(response)] = torch.tensor(response, dtype=torch.long)
            segment_ids[i, at : at + len(response)] = k + 1
            position_ids[i, at : at + len(response)] = torch.arange(len(prompt), len(prompt) + len(response))
            at += len(response)
    if group_index is None:
        group_index = [i for i, (_, responses) in enumerate(rows) for _ in responses]
    return PackedRows(
        input_ids=input_ids,
        attention_mask=(segment_ids != PADDING).long(),
        loss_mask=segment_ids > PROMPT,
        segment_ids=segment_ids,
        response_offset=torch.tensor([0, *[len(rs) for _, rs in rows]], dtype=torch.long).cumsum(0)[:-1],
        group_index=torch.tensor(group_index, dtype=torch.long),
        position_ids=position_ids if positions else None,
    )
