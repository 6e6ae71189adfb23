"""Training samples/s: sa-train's batched step vs a reference-style batch-size-1 loop (target ≥ 3×), same data, CPU.

A sample is one group (a query with its K rated responses). Both sides train the same groups with the same Stable
Alignment loss, the same precision and one AdamW step per `--groups-per-batch` groups:
- `reference_style`: as agi-templar/Stable-Alignment's AlignmentTrainer run by its README (batch size 1, gradient
  accumulation 8, bf16): one group per forward/backward (its collator keeps only the last group of a batch),
  anomaly detection on (`torch.autograd.set_detect_anomaly(True)` at import), `model(..., labels=labels)` (HF
  computes a full-vocabulary loss that is thrown away), then the logits are shifted with `.contiguous()` copies and
  a full-vocabulary cross-entropy per response.
- `sa_train`: sa-train as configured in conf/train.yaml: G groups × K responses per forward, one row per group with
  the prompt forwarded once for its K responses (`train.share_prompt`), rows forwarded sorted by length in chunks of
  `train.max_tokens_per_forward` padded tokens, vocabulary projection and cross-entropy only at trained positions,
  anomaly detection off.
- `sa_train_row_per_response`: the same with `train.share_prompt=false` (each response row repeats its prompt).
`reference_style_no_anomaly` is the same loop with anomaly detection off, to show where the time goes. One untimed
step first allocates the gradients and AdamW state, and every variant runs once untimed (`--warmup`) so that none
pays for first-use kernel setup; then `--repeats` interleaved rounds, medians reported.

`--precision bf16` (the default where the CPU has native bf16, e.g. AMX, as the reference trained with `--bf16 True`)
runs both sides under `torch.autocast("cpu", torch.bfloat16)` with fp32 master weights, as `sa-train
model.precision=bf16` does; `--precision fp32` runs both in fp32.

    .venv/bin/python -m benchmarks.bench_train_batching [--model embedded:smollm2]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

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
    train_defaults,
)
from conf.devices import cpu_has_native_bf16
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
    parser.add_argument(
        "--groups-per-batch", type=int, default=8,
        help="groups per optimizer step, both sides (G of sa-train; the reference's gradient accumulation)",
    )  # fmt: skip
    parser.add_argument(
        "--precision", choices=("bf16", "fp32"), default="bf16" if cpu_has_native_bf16() else "fp32",
        help="both sides (default: bf16 where the CPU has native bf16)",
    )  # fmt: skip
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument(
        "--max-tokens", type=int, default=int(train_defaults().max_tokens_per_forward),
        help="train.max_tokens_per_forward (default: conf/train.yaml's)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=1,
        help="untimed calls per variant first (oneDNN builds its bf16 kernels per shape on first use)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    threads(args.threads)
    model, tokenizer = load(args.model)
    items = tokenize(tokenizer, synthetic_groups(args.groups, args.k))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)
    shared, per_response = sa_collator(tokenizer, share_prompt=True), sa_collator(tokenizer, share_prompt=False)
    batches = {
        layout: [collate(items[i : i + args.groups_per_batch]) for i in range(0, len(items), args.groups_per_batch)]
        for layout, collate in (("shared", shared), ("per_response", per_response))
    }
    theirs = [reference_batch(item, tokenizer.pad_token_id) for item in items]

    def autocast() -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step() -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sa_train(layout: str) -> None:
        for batch in batches[layout]:
            with autocast():
                stats = response_stats(model, batch, max_tokens=args.max_tokens)
                loss = stable_alignment_loss(stats.nll, stats.ratings, stats.mask, margin=1.0, lam=0.2).loss
            loss.backward()
            step()

    def reference_style(anomaly: bool = True) -> None:
        with torch.autograd.set_detect_anomaly(anomaly):
            for i, batch in enumerate(theirs, start=1):  # batch size 1: one group per forward and backward
                with autocast():
                    loss = reference_loss(model, batch) / args.groups_per_batch
                loss.backward()
                if i % args.groups_per_batch == 0 or i == len(theirs):
                    step()

    with autocast():  # warm-up: gradients and optimizer state allocated
        loss = reference_loss(model, theirs[0])
    loss.backward()
    step()
    times = interleaved(
        {
            "sa_train": lambda: sa_train("shared"),
            "sa_train_row_per_response": lambda: sa_train("per_response"),
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
        "groups": args.groups, "k": args.k, "groups_per_optimizer_step": args.groups_per_batch,
        "precision": args.precision,
        "max_tokens_per_forward": args.max_tokens,
        "tokens": sum(len(i["prompt_ids"]) * args.k + sum(map(len, i["response_ids"])) for i in items),
        "tokens_forwarded_shared_prompt": sum(int(b["attention_mask"].sum()) for b in batches["shared"]),
        "samples_per_s": samples_per_s,
        "all_call_s": times,
        "ratio_sa_train_over_reference_style": ratio,
        "ratio_sa_train_row_per_response_over_reference_style": {
            kind: samples_per_s["sa_train_row_per_response"][kind] / samples_per_s["reference_style"][kind]
            for kind in ("cpu", "wall")
        },
        "ratio_sa_train_over_reference_style_no_anomaly": {
            kind: samples_per_s["sa_train"][kind] / samples_per_s["reference_style_no_anomaly"][kind]
            for kind in ("cpu", "wall")
        },
        "target": "sa_train / reference_style samples/s >= 3 (CPU seconds)", "pass": ratio["cpu"] >= 3.0,
        **environment(), "dtype": args.precision, "cpu_native_bf16": cpu_has_native_bf16(),
    })  # fmt: skip


if __name__ == "__main__":
    main()
