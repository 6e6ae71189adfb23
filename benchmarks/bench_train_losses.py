"""Stable Alignment step ÷ SFT step on the same tokens (target ≤ 1.2), same model, same batch, CPU.

One training step = forward + loss + backward + AdamW step over one batch of G groups × K responses.
- `stable_alignment`: sa-train's path (one padded forward, per-response token-mean NLL, rating-margin penalty), here
  with one row per response (`train.share_prompt=false`) so that both sides forward exactly the same tokens.
- `sft_hf`: the plain SFT step anyone writes: `model(input_ids, labels=...)` with the prompt masked (-100), HF's loss.
- `sft_same_path`: SFT through sa-train's own path (mean of ℓ_i over the same responses): isolates the loss overhead.

    .venv/bin/python -m benchmarks.bench_train_losses [--model embedded:smollm2]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.bench_train_common import (
    emit,
    environment,
    interleaved,
    load,
    sa_collator,
    summary,
    synthetic_groups,
    threads,
    tokenize,
)
from training.logprobs import response_stats
from training.losses import stable_alignment_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    threads(args.threads)
    model, tokenizer = load(args.model)
    items = tokenize(tokenizer, synthetic_groups(args.groups, args.k))
    batch = sa_collator(tokenizer, share_prompt=False)(items)
    labels = batch["input_ids"].masked_fill(~batch["loss_mask"], -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)

    def step(loss: torch.Tensor) -> None:
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def stable_alignment() -> None:
        stats = response_stats(model, batch)
        step(stable_alignment_loss(stats.nll, stats.ratings, stats.mask, margin=1.0, lam=0.2).loss)

    def sft_hf() -> None:
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, use_cache=False
        )
        step(out.loss)

    def sft_same_path() -> None:
        stats = response_stats(model, batch)
        step(stats.nll[stats.mask].mean())

    times = interleaved(
        {"stable_alignment": stable_alignment, "sft_hf": sft_hf, "sft_same_path": sft_same_path}, args.repeats
    )
    med = summary(times)
    ratio = {kind: med["stable_alignment"][kind] / med["sft_hf"][kind] for kind in ("cpu", "wall")}
    emit({
        "benchmark": "train_losses", "model": args.model, "params": sum(p.numel() for p in model.parameters()),
        "batch": {"groups": args.groups, "k": args.k, "rows": int(batch["input_ids"].shape[0]),
                  "padded_length": int(batch["input_ids"].shape[1]),
                  "trained_tokens": int(batch["loss_mask"].sum()), "tokens": int(batch["attention_mask"].sum())},
        "median_step_s": med,
        "all_step_s": times,
        "ratio_stable_alignment_over_sft_hf": ratio,
        "ratio_stable_alignment_over_sft_same_path": {
            kind: med["stable_alignment"][kind] / med["sft_same_path"][kind] for kind in ("cpu", "wall")
        },
        "target": "stable_alignment / sft_hf <= 1.2 (CPU seconds)", "pass": ratio["cpu"] <= 1.2,
        **environment(),
    })  # fmt: skip


if __name__ == "__main__":
    main()
