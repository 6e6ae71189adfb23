"""Load `sa-build-data` output, tokenize it with the model's chat template, and sample K responses per group.

The chat template renders the prompt exactly as at inference (`add_generation_prompt=True`); the completion is what
the template appends for the assistant turn, up to and including its end-of-turn token, so EOS is trained.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, load_dataset
from transformers import PreTrainedTokenizerBase

from agents.backends.chat_template import completion_ids, render
from conf.errors import UserError, require
from environment.records import RATING_MAX, RATING_MIN, valid_rating

REQUIRED_KEYS = ("messages", "responses", "stage")


def resolve_data_file(data: str | Path) -> Path:
    """A data folder (its train.jsonl or train.parquet) or a data file; a one-line error when it is missing."""
    path = Path(str(data)).expanduser()
    if path.is_dir():
        for name in ("train.jsonl", "train.parquet"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"no train.jsonl or train.parquet in {path}; build it with sa-build-data hydra.run.dir={path}")
    require(path.is_file(), f"data file {path} not found; pass data=<sa-build-data output folder>")
    return path


def load_groups(data: str | Path) -> Dataset:
    """The grouped dataset as a `datasets.Dataset`; a corrupt or foreign file, or a field of the wrong type, gives a
    one-line error naming the file, the line and the field."""
    path = resolve_data_file(data)
    kind = "parquet" if path.suffix == ".parquet" else "json"
    if kind == "json":
        check_lines(path)  # before datasets, whose errors for mixed types name neither the line nor the field
    try:
        dataset = load_dataset(kind, data_files=str(path), split="train")
    except Exception as error:  # datasets wraps parser errors in several types
        raise UserError(f"{path} is not a readable sa-build-data file ({type(error).__name__}); rebuild it") from None
    missing = [key for key in REQUIRED_KEYS if key not in dataset.column_names]
    require(not missing, f"{path} lacks column(s) {', '.join(missing)}; it is not sa-build-data output, rebuild it")
    require(len(dataset) > 0, f"{path} holds no groups; check the episodes passed to sa-build-data")
    if kind != "json":
        check_ratings(dataset, path)
    return dataset


def check_lines(path: Path) -> None:
    """Every non-blank line of a JSONL data file is a group with the fields and types `check_group` wants."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                group = json.loads(line)
            except ValueError:
                raise UserError(
                    f"{path}:{number}: not valid JSON (a cut-off line?); rebuild it with sa-build-data"
                ) from None
            check_group(group, f"{path}:{number}")


def short_json(value: Any) -> str:
    """A value as JSON for a message, cut to 40 characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def decoded_messages(messages: Any) -> Any:
    """A group's `messages`: the list, or that list as sa-build-data's parquet may hold it, a JSON string (None when
    the string is not JSON)."""
    try:
        return json.loads(messages) if isinstance(messages, str) else messages
    except ValueError:
        return None


def check_group(group: Any, where: str) -> None:
    """One group as sa-build-data writes it: `messages` (a list of {role, content} strings, or that list as a JSON
    string), an integer `stage` and non-empty `responses` of {text, rating}. A wrong type is a one-line `UserError`
    naming `where` (file:line) and the field."""
    fix = "rebuild the data with sa-build-data"

    def expect(ok: bool, key: str, want: str, found: Any) -> None:
        """A `UserError` naming the field and what it holds unless `ok` (the message is built only then)."""
        if not ok:
            raise UserError(f"{where}: field '{key}' must be {want}, found {short_json(found)}; {fix}")

    if not isinstance(group, dict):
        raise UserError(f"{where}: a group must be a JSON object, found {short_json(group)}; {fix}")
    for key in REQUIRED_KEYS:
        require(key in group, f"{where}: field '{key}' is missing; {fix}")
    messages = decoded_messages(group["messages"])
    listed = isinstance(messages, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    )
    expect(listed and bool(messages), "messages", "a non-empty list of {role, content} strings", group["messages"])
    stage = group["stage"]
    expect(isinstance(stage, int) and not isinstance(stage, bool), "stage", "an integer", stage)
    responses = group["responses"]
    expect(isinstance(responses, list), "responses", "a list of {text, rating} objects", responses)
    require(bool(responses), f"{where}: a group without responses; {fix}")
    for j, response in enumerate(responses):
        expect(isinstance(response, dict), f"responses[{j}]", "a {text, rating} object", response)
        rating = response.get("rating")
        if isinstance(rating, bool) or not isinstance(rating, int | float):
            raise UserError(
                f"{where}: response rating {rating!r} is not a number; drop invalid ratings "
                "(sa-build-data does) instead of coercing them"
            )
        if valid_rating(rating) is None:
            raise UserError(
                f"{where}: response rating {rating!r} is outside {RATING_MIN}..{RATING_MAX} (or not finite); "
                "an unreadable rating is null and dropped (sa-build-data does), never a placeholder number"
            )
        expect(isinstance(response.get("text"), str), f"responses[{j}].text", "a string", response.get("text"))


def check_ratings(dataset: Dataset, path: Path) -> None:
    """Every group of a loaded dataset passes `check_group` (row n is `path:n`): a null, non-numeric, NaN/inf or
    out-of-scale rating (the reference's 8 and −1 placeholders) is an error naming the file and line, never coerced."""
    for row, group in enumerate(dataset, start=1):
        check_group(group, f"{path}:{row}")


# Where a realignment target's revision starts (training/build_data.py `realignment_output` writes "Feedback: …" and
# then this header and the revision); tests/test_training_collator.py checks the builder still writes it.
REVISION_HEADER = "\n\nRevised response: "


def protected_tail(tokenizer: PreTrainedTokenizerBase, completion: str, ids: list[int], realignment: bool) -> int:
    """Index of the first token a cut must keep: a realignment target's revision header, or `len(ids)` (none)."""
    at = completion.rfind(REVISION_HEADER) if realignment else -1
    if at < 0:
        return len(ids)
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return next((i for i, (_, end) in enumerate(offsets[: len(ids)]) if end > at), len(ids))
    return min(len(tokenizer(completion[:at], add_special_tokens=False)["input_ids"]), len(ids))


def tokenize_groups(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Add `prompt_ids`, `response_ids`, `ratings` and `protect_from` columns (one tokenization per response, done
    once). `protect_from[j]` is where response j's part that truncation must keep whole starts (the revision of a
    realignment target, so its feedback is cut first); `len(response_ids[j])` when there is none."""

    def encode(item: dict[str, Any]) -> dict[str, Any]:
        messages = decoded_messages(item["messages"])
        prompt_text = None
        responses, protect = [], []
        for response in item["responses"]:
            prompt_text, completion = render(tokenizer, messages, response["text"])
            ids = completion_ids(tokenizer, completion)
            realignment = "realignment" in (response.get("kind"), response.get("source"), item.get("kind"))
            responses.append(ids)
            protect.append(protected_tail(tokenizer, completion, ids, realignment))
        return {
            "prompt_ids": tokenizer(prompt_text or "", add_special_tokens=False)["input_ids"],
            "response_ids": responses,
            "ratings": [float(r["rating"]) for r in item["responses"]],
            "protect_from": protect,
        }

    drop = [c for c in dataset.column_names if c != "stage"]
    return dataset.map(encode, remove_columns=drop, desc="tokenizing")


def epoch_plan(n_groups: int, batch_size: int, slots: int) -> list[list[list[int]]]:
    """Split one epoch's positions 0..n_groups-1 into optimizer steps of `batch_size` groups (the last one smaller),
    and each step into `slots` contiguous micro-batches as even as possible (an empty one where a step has fewer
    groups than slots). Slot j of a step goes to process j % num_processes as its micro-batch j // num_processes."""
    return [
        [part.tolist() for part in torch.arange(start, min(start + batch_size, n_groups)).tensor_split(slots)]
        for start in range(0, n_groups, batch_size)
    ]


class GroupDataset(torch.utils.data.Dataset):
    """Groups in curriculum order; item i holds K responses sampled from group i, resampled every epoch.

    The order and the sample depend only on (seed, epoch, index), never on the process or on how often the dataset
    was iterated, so every process of a run and a resumed run see the same groups and responses.
    """

    def __init__(self, tokenized: Dataset, group_size: int, seed: int = 0) -> None:
        self.rows = tokenized
        self.group_size = group_size
        self.seed = seed
        self.stages = list(tokenized["stage"])
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle (within stages) and resample the K responses of every group; call at the start of each epoch."""
        self.epoch = epoch
        order = list(range(len(self.stages)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        self.order = sorted(order, key=lambda i: self.stages[i])  # stages in order, shuffled within each

    def __len__(self) -> int:
        return len(self.order)

    def sample(self, i: int) -> tuple[int, list[int]]:
        """(row of the data file, indices of its K sampled responses) at position i of this epoch."""
        row = self.order[i]
        count = len(self.rows[row]["ratings"])
        rng = random.Random(self.seed * 1_000_003 + self.epoch * 10_007 + i)
        return row, sorted(rng.sample(range(count), min(self.group_size, count)))

    def __getitem__(self, i: int) -> dict[str, Any]:
        index, picked = self.sample(i)
        row = self.rows[index]
        picks = {key: [row[key][j] for j in picked] for key in ("response_ids", "ratings", "protect_from")}
        return {"prompt_ids": row["prompt_ids"], **picks}
