"""The collated batch is a dataclass (`PackedRows` / `GroupBatch`), not a dict whose keys callers must know: it moves
between devices whole, survives DataLoader workers and accelerate's prepared loader, and sa-eval's choice rows share
its layout."""

from __future__ import annotations

from dataclasses import fields

import torch
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader

from training.collator import GroupBatch, GroupCollator, PackedRows, pad_rows

GROUPS = [
    {"prompt_ids": [5, 6, 7], "response_ids": [[8, 9], [10], [11, 12, 13]], "ratings": [5.0, 2.0, 6.0]},
    {"prompt_ids": [14, 15], "response_ids": [[16, 17], [18]], "ratings": [1.0, 3.0]},
]


def tensors(batch: PackedRows) -> dict[str, torch.Tensor]:
    return {f.name: getattr(batch, f.name) for f in fields(batch) if getattr(batch, f.name) is not None}


def test_a_batch_moves_to_a_device_whole_through_send_to_device() -> None:
    for share in (False, True):
        batch = GroupCollator(0, share_prompt=share)(GROUPS)
        moved = send_to_device(batch, torch.device("meta"))
        assert type(moved) is GroupBatch and (moved.position_ids is None) == (not share)
        assert {name: value.device.type for name, value in tensors(moved).items()} == dict.fromkeys(
            tensors(batch), "meta"
        )
        assert moved.slot_index.shape == batch.slot_index.shape and moved["cut"] is moved.cut


def test_a_batch_survives_a_worker_process_and_accelerates_prepared_loader() -> None:
    collator = GroupCollator(0, share_prompt=True)
    expected = collator(GROUPS)
    for loader in (
        DataLoader(GROUPS, batch_size=2, collate_fn=collator, num_workers=1),
        prepare_data_loader(
            DataLoader(GROUPS, batch_size=2, collate_fn=collator),
            torch.device("cpu"),
            num_processes=1,
            process_index=0,
            put_on_device=True,
        ),
    ):
        (batch,) = list(loader)
        assert type(batch) is GroupBatch
        assert all(torch.equal(value, getattr(expected, name)) for name, value in tensors(batch).items())


def test_rows_and_responses_are_numbered_as_logprobs_reads_them() -> None:
    rows = [([1, 2], [[3, 4], [5]]), ([6], [[7, 8, 9]])]
    packed = pad_rows(rows, 0, positions=True)
    assert packed.group_index.tolist() == [0, 0, 1] and packed.n_responses == 3  # default: a group per row
    assert packed.response_offset.tolist() == [0, 2]
    assert packed.segment_ids.tolist() == [[0, 0, 1, 1, 2], [0, 1, 1, 1, -1]]
    assert packed.position_ids.tolist()[0] == [0, 1, 2, 3, 2]
    part = packed.take_rows(torch.tensor([1]), 4)
    assert part.input_ids.tolist() == [[6, 7, 8, 9]] and part.response_offset.tolist() == [2]
    assert part.n_responses == 3  # responses keep their batch-wide numbering
