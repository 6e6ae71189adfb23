"""Training samples/s: sa-train's batched step vs a reference-style batch-size-1 loop (target ≥ 3×), same data, CPU.

A sample is one group (a query with its K rated responses). Both sides train the same groups with the same Stable
Alignment loss and an AdamW step:
- `reference_style`: as agi-templar/Stable-Alignment's AlignmentTrainer — one group per step (its collator keeps
  only the last group of a batch), anomaly detection on (`torch.autograd.set_detect_anomaly(True)` at import),
  `model(..., labels=labels)` (HF computes a full-vocabulary loss that is thrown away), then the logits are shifted
  with `.contiguous()` copies and a full-vocabulary cross-entropy per response.
- `sa_train`: G groups × K responses per optimizer step (sa-train's collator), rows forwarded sorted by length in
  chunks of `--max-tokens` padded tokens, vocabulary projection and cross-entropy only at trained positions,
  anomaly detection off.
`reference_style_no_anomaly` is the same loop with anomaly detection off, to show where the time goes.

    .venv/bin/python benchmarks/bench_train_batching.py [--model embedded:smollm2]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from bench_train_common import emit, environment, interleaved, load, summary, synthetic_groups, threads, tokenize

from training.collator import GroupCollator
from training.logprobs import response_stats
from training.losses import stable_alignment_loss


def reference_batch(item: dict, pad_id: int) -> dict[str, torch.Tensor]:
    """One group: K rows of prompt + response, right padded, labels -100 on prompt and padding."""
    rows = [item["prompt_ids"] + r for r in item["response_ids"]]
    longest = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), longest), pad_id)
    labels = torch.full((len(rows), longest), -100)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        labels[i, len(item["prompt_ids"]) : len(row)] = torch.tensor(row[len(item["prompt_ids"]) :])
    attention = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        attention[i, : len(row)] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "scores": torch.tensor(item["ratings"]),
    }


def reference_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference compute_loss (with its margin indexing fixed, which costs nothing)."""
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    logits = outputs["logits"]
    shift_logits = logits[..., :-1, :].contiguous()
    shift_labels = batch["labels"][..., 1:].contiguous()
    losses = torch.stack([
        F.cross_entropy(lg.view(-1, logits.size(-1)), lb.view(-1), ignore_index=-100)
        for lg, lb in zip(shift_logits, shift_labels, strict=True)
    ])  # fmt: skip
    return stable_alignment_loss(losses, batch["scores"].to(losses.dtype), margin=1.0, lam=0.2).loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2")
    parser.add_argument("--groups", type=int, default=8, help="groups trained per timed call (both sides)")
    parser.add_argument("--groups-per-batch", type=int, default=8, help="G of sa-train")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=2048, help="sa-train's train.max_tokens_per_forward")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=0, help="untimed calls per variant first")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    threads(args.threads)
    model, tokenizer = load(args.model)
    items = tokenize(tokenizer, synthetic_groups(args.groups, args.k))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)
    collate = GroupCollator(tokenizer.pad_token_id, max_length=480, max_prompt_length=320)
    ours = [collate(items[i : i + args.groups_per_batch]) for i in range(0, len(items), args.groups_per_batch)]
    theirs = [reference_batch(item, tokenizer.pad_token_id) for item in items]

    def step(loss: torch.Tensor) -> None:
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sa_train() -> None:
        for batch in ours:
            stats = response_stats(model, batch, max_tokens=args.max_tokens)
            step(stable_alignment_loss(stats.nll, stats.ratings, stats.mask, margin=1.0, lam=0.2).loss)

    def reference_style(anomaly: bool = True) -> None:
        with torch.autograd.set_detect_anomaly(anomaly):
            for batch in theirs:  # batch size 1: one group per optimizer step
                step(reference_loss(model, batch))

    times = interleaved(
        {
            "sa_train": sa_train,
            "reference_style": reference_style,
            "reference_style_no_anomaly": lambda: reference_style(False),
        },
        args.repeats,
        warmup=args.warmup,
    )
    per_group = summary(times, {name: float(args.groups) for name in times})
    samples_per_s = {name: {kind: 1.0 / v for kind, v in t.items()} for name, t in per_group.items()}
    ratio = {kind: samples_per_s["sa_train"][kind] / samples_per_s["reference_style"][kind] for kind in ("cpu", "wall")}
    emit({
        "benchmark": "train_batching", "model": args.model, "params": sum(p.numel() for p in model.parameters()),
        "groups": args.groups, "k": args.k, "sa_train_groups_per_batch": args.groups_per_batch,
        "max_tokens_per_forward": args.max_tokens,
        "tokens": sum(len(i["prompt_ids"]) * args.k + sum(map(len, i["response_ids"])) for i in items),
        "samples_per_s": samples_per_s,
        "all_call_s": times,
        "ratio_sa_train_over_reference_style": ratio,
        "ratio_sa_train_over_reference_style_no_anomaly": {
            kind: samples_per_s["sa_train"][kind] / samples_per_s["reference_style_no_anomaly"][kind]
            for kind in ("cpu", "wall")
        },
        "target": "sa_train / reference_style samples/s >= 3 (CPU seconds)", "pass": ratio["cpu"] >= 3.0,
        **environment(),
    })  # fmt: skip


if __name__ == "__main__":
    main()
