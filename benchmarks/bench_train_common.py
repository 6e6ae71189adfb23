"""Shared pieces of the bench_train_* scripts: the model, a synthetic grouped data set, interleaved timing.

Not a benchmark itself. The data are the shipped societal questions with K synthetic answers of realistic length
(50–130 tokens, like sampled drafts at max_tokens 256), tokenized with the model's chat template exactly as sa-train
does, so every script times the same tokens.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
TEXT = (
    "people should respect honesty because trust matters and harm follows when we deceive others about what they need "
    "to know; fairness requires listening to every side, explaining reasons, avoiding bias, and caring for the weak"
)
WORDS = TEXT.split(" ")


def model_path(name: str) -> str:
    """`embedded:smollm2` (the real SmolLM2-135M-Instruct, converted offline) or any local HF folder."""
    from conf.paths import resolve_model_path

    return str(resolve_model_path(name))


def load(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    path = model_path(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.use_cache = False
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.train(), tokenizer


def train_defaults() -> Any:
    """The `train:` section of conf/train.yaml, so the scripts time sa-train as it ships."""
    from omegaconf import OmegaConf

    return OmegaConf.load(ROOT / "conf/train.yaml").train


def sa_collator(tokenizer, share_prompt: bool | None = None):
    """sa-train's collator with its default lengths and layout (`share_prompt` overrides the layout)."""
    from training.collator import GroupCollator

    t = train_defaults()
    share = bool(t.share_prompt) if share_prompt is None else share_prompt
    return GroupCollator(tokenizer.pad_token_id, int(t.max_length), int(t.max_prompt_length), share_prompt=share)


def synthetic_groups(n_groups: int, k: int, seed: int = 0) -> list[dict[str, Any]]:
    """n_groups questions, each with k answers of 40–100 words and distinct-ish ratings in 1..7."""
    rng = random.Random(seed)
    questions = [json.loads(line)["question"] for line in (ROOT / "environment/data/questions.jsonl").open()]
    groups = []
    for g in range(n_groups):
        answers = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 100))).capitalize() + "." for _ in range(k)
        ]
        ratings = rng.sample(range(1, 8), k) if k <= 7 else [rng.randint(1, 7) for _ in range(k)]
        groups.append({"question": questions[g % len(questions)], "answers": answers, "ratings": ratings})
    return groups


def tokenize(tokenizer, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GroupDataset item format (prompt_ids, response_ids, ratings), via sa-train's own rendering."""
    from training.dataset import completion_ids, render

    items = []
    for group in groups:
        messages = [{"role": "user", "content": group["question"]}]
        rendered = [render(tokenizer, messages, answer) for answer in group["answers"]]
        items.append({
            "prompt_ids": tokenizer(rendered[0][0], add_special_tokens=False)["input_ids"],
            "response_ids": [completion_ids(tokenizer, completion) for _, completion in rendered],
            "ratings": [float(r) for r in group["ratings"]],
        })  # fmt: skip
    return items


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, list]]:
    """Run every variant `warmup` times, then `repeats` rounds A, B, C, A, B, C, ... so drift hits all alike.

    Records wall seconds and this process's CPU seconds per call. On a shared machine the CPU seconds (with one
    intra-op thread, see `threads`) are the robust figure: time spent descheduled by other jobs is not counted.
    """
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, dict[str, list]] = {name: {"wall": [], "cpu": []} for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times


def summary(times: dict[str, dict[str, list]], per: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds per variant, divided by `per[name]` (e.g. groups per call) when given."""
    per = per or {}
    return {
        name: {kind: median(values) / per.get(name, 1.0) for kind, values in t.items()} for name, t in times.items()
    }


def threads(count: int) -> None:
    """Fix torch's intra-op threads (1 by default in these scripts: CPU time then measures work, not spinning)."""
    torch.set_num_threads(count)


def median(values: list[float]) -> float:
    return statistics.median(values)


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "device": "cpu", "dtype": "fp32",
    }  # fmt: skip


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))
