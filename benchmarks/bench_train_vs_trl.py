"""Step time: sa-train vs TRL's DPOTrainer on the same preference pairs (target ≤ 0.7), same model, CPU.

Pairs = (best, worst) response of each synthetic group; every step trains `--pairs` pairs with AdamW. Timed per
optimizer step (forward, loss, backward, optimizer), the first step of each side is a warm-up.
- `trl_dpo`: `trl.DPOTrainer` with its defaults (sigmoid loss, a frozen reference copy of the policy,
  conversational data rendered with the chat template), `per_device_train_batch_size = --pairs`.
- `sa_train_stable_alignment`: sa-train's step (conf/train.yaml defaults: the prompt forwarded once for both answers)
  with the Stable Alignment loss on the same pairs (K = 2): no reference model is needed, which is the method's point.
- `sa_train_stable_alignment_row_per_response`: the same with `train.share_prompt=false` (each answer row repeats
  its prompt, as TRL's concatenated forward does).
- `sa_train_dpo`: sa-train's own DPO (same equation as TRL, frozen reference copy) on the same pairs.

    .venv/bin/python -m benchmarks.bench_train_vs_trl [--model embedded:smollm2]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch

from benchmarks.bench_train_common import (
    emit,
    environment,
    load,
    median,
    model_path,
    sa_collator,
    synthetic_groups,
    threads,
    tokenize,
    train_defaults,
)
from training.logprobs import response_stats
from training.losses import ResponseStats, dpo_loss, stable_alignment_loss


def pairs_of(groups: list[dict]) -> list[dict]:
    """Best vs worst answer of each group (ratings are distinct)."""
    out = []
    for g in groups:
        best = max(range(len(g["ratings"])), key=lambda i: g["ratings"][i])
        worst = min(range(len(g["ratings"])), key=lambda i: g["ratings"][i])
        out.append({
            "question": g["question"], "answers": [g["answers"][best], g["answers"][worst]],
            "ratings": [g["ratings"][best], g["ratings"][worst]],
        })  # fmt: skip
    return out


def time_trl(name: str, pairs: list[dict], per_step: int, steps: int) -> dict[str, list[float]]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = load(name)
    rows = [
        {
            "prompt": [{"role": "user", "content": p["question"]}],
            "chosen": [{"role": "assistant", "content": p["answers"][0]}],
            "rejected": [{"role": "assistant", "content": p["answers"][1]}],
        }
        for p in pairs
    ]
    times: dict[str, list[float]] = {"wall": [], "cpu": []}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            times["cpu"].append(time.process_time() - self.cpu)
            times["wall"].append(time.perf_counter() - self.wall)

    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out, per_device_train_batch_size=per_step, gradient_accumulation_steps=1, max_steps=steps,
            learning_rate=1e-7, optim="adamw_torch", logging_steps=10**6, report_to="none", save_strategy="no",
            use_cpu=True, bf16=False, fp16=False, max_length=480, dataloader_num_workers=0, seed=0,
            disable_tqdm=True,
        )  # fmt: skip
        trainer = DPOTrainer(
            model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
            callbacks=[Timer()],
        )  # fmt: skip
        trainer.train()
    return {kind: values[1:] for kind, values in times.items()}  # drop the warm-up step


def time_ours(
    name: str, pairs: list[dict], per_step: int, steps: int, loss: str, share_prompt: bool | None = None
) -> dict[str, list[float]]:
    model, tokenizer = load(name)
    reference = copy.deepcopy(model).eval().requires_grad_(False) if loss == "dpo" else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)
    collate = sa_collator(tokenizer, share_prompt)
    max_tokens = int(train_defaults().max_tokens_per_forward)
    items = tokenize(
        tokenizer, [{"question": p["question"], "answers": p["answers"], "ratings": p["ratings"]} for p in pairs]
    )
    times: dict[str, list[float]] = {"wall": [], "cpu": []}
    for s in range(steps):
        batch = collate(items[s * per_step : (s + 1) * per_step])
        wall, cpu = time.perf_counter(), time.process_time()
        stats: ResponseStats = response_stats(model, batch, reference, max_tokens)
        if loss == "dpo":
            out = dpo_loss(stats, beta=0.1)
        else:
            out = stable_alignment_loss(stats.nll, stats.ratings, stats.mask, margin=1.0, lam=0.2)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times["cpu"].append(time.process_time() - cpu)
        times["wall"].append(time.perf_counter() - wall)
    return {kind: values[1:] for kind, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2")
    parser.add_argument("--pairs", type=int, default=4, help="pairs per optimizer step (both sides)")
    parser.add_argument("--steps", type=int, default=4, help="steps per side, the first one a warm-up")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    threads(args.threads)
    model_path(args.model)  # convert the embedded model once, outside any timing
    pairs = pairs_of(synthetic_groups(args.pairs * args.steps, 3))
    times = {
        "sa_train_stable_alignment": time_ours(args.model, pairs, args.pairs, args.steps, "stable_alignment"),
        "sa_train_stable_alignment_row_per_response": time_ours(
            args.model, pairs, args.pairs, args.steps, "stable_alignment", share_prompt=False
        ),
        "trl_dpo": time_trl(args.model, pairs, args.pairs, args.steps),
        "sa_train_dpo": time_ours(args.model, pairs, args.pairs, args.steps, "dpo"),
    }
    med = {name: {kind: median(v) for kind, v in t.items()} for name, t in times.items()}
    ratio = {
        name: {kind: med[name][kind] / med["trl_dpo"][kind] for kind in ("cpu", "wall")}
        for name in ("sa_train_stable_alignment", "sa_train_stable_alignment_row_per_response", "sa_train_dpo")
    }
    emit({
        "benchmark": "train_vs_trl", "model": args.model, "pairs_per_step": args.pairs,
        "timed_steps_per_side": args.steps - 1, "median_step_s": med, "all_step_s": times,
        "ratio_over_trl_dpo": ratio,
        "target": "sa_train_stable_alignment / trl_dpo step time <= 0.7 (CPU seconds)",
        "pass": ratio["sa_train_stable_alignment"]["cpu"] <= 0.7,
        **environment(),
    })  # fmt: skip


if __name__ == "__main__":
    main()
