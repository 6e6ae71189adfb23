"""Batch G groups × K responses into one right-padded forward pass.

Each row is prompt + response. `loss_mask` marks the response tokens (EOS included) whose log-probability is
trained; prompt and padding are masked by position, never by pad id (SmolLM2's pad token is its EOS). A prompt keeps
its last `max_prompt_length` tokens; the response fills the rest of `max_length`. A response truncated to nothing
keeps its row but has no trained token and `present == False`, so the loss ignores it (no 0/0, no NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from training.losses import SELECT_ALL, SELECT_BEST, SELECT_PAIR


def select_responses(ratings: list[float], select: str) -> list[int]:
    """Indices a loss needs: all; the best (ties: first); or best then worst (ties: first), when they differ."""
    if select == SELECT_ALL or len(ratings) <= 1:
        return list(range(len(ratings))) if select == SELECT_ALL else list(range(min(1, len(ratings))))
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

    def __call__(self, groups: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows: list[list[int]] = []
        starts: list[int] = []
        lengths: list[int] = []
        group_index: list[int] = []
        slot_index: list[int] = []
        chosen = [select_responses(group["ratings"], self.select) for group in groups]
        width = max((len(c) for c in chosen), default=1)
        ratings = torch.zeros(len(groups), width)
        for g, (group, picked) in enumerate(zip(groups, chosen, strict=True)):
            prompt = list(group["prompt_ids"])[-self.max_prompt_length :] if self.max_prompt_length > 0 else []
            room = max(0, self.max_length - len(prompt))
            for k, j in enumerate(picked):
                response = list(group["response_ids"][j])[:room]
                rows.append(prompt + response)
                starts.append(len(prompt))
                lengths.append(len(response))
                group_index.append(g)
                slot_index.append(k)
                ratings[g, k] = float(group["ratings"][j])
        longest = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        loss_mask = torch.zeros((len(rows), longest), dtype=torch.bool)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
            loss_mask[i, starts[i] : starts[i] + lengths[i]] = True
        present = torch.zeros(len(groups), width, dtype=torch.bool)
        present[torch.tensor(group_index), torch.tensor(slot_index)] = torch.tensor(lengths) > 0
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "loss_mask": loss_mask,
            "group_index": torch.tensor(group_index, dtype=torch.long),
            "slot_index": torch.tensor(slot_index, dtype=torch.long),
            "ratings": ratings,
            "present": present,
        }
