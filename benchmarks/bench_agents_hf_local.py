"""Benchmark (b): hf_local micro-batching vs one-at-a-time, SmolLM2-135M-Instruct on CPU.

16 concurrent requests (same prompts, greedy, same max_tokens) through the same backend class, once with
max_batch_size=16 and once with max_batch_size=1. Generated tokens are counted honestly: each row up to its own EOS
(tokens generated after a row finished, while the batch ran on, are not counted). Prints JSON with
  ratio = batched tokens/s / one-at-a-time tokens/s     (target >= 3.5)

    python -m benchmarks.bench_agents_hf_local [--requests 16] [--max-tokens 96] [--dtype auto] [--model embedded:smollm2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from agents.backends.base import Sampling
from agents.backends.hf_local import HFLocalBackend

TOPICS = [
    "why people should vote", "how to resolve a conflict with a neighbour", "whether lying is ever acceptable",
    "how to treat people from other cultures", "what makes a good friend", "why honesty matters at work",
    "how to disagree politely online", "whether rich people should pay more tax", "how to help a homeless person",
    "what to do if you find a lost wallet", "why gender equality matters", "how to talk about religion respectfully",
    "whether animals have rights", "how to reduce waste at home", "why education should be free",
    "how to welcome a new colleague",
]  # fmt: skip


def requests(n: int) -> list[list[dict[str, str]]]:
    return [
        [{"role": "system", "content": "You are a member of a society. You answer questions in your own words."},
         {"role": "user", "content": f"Explain in detail {TOPICS[i % len(TOPICS)]}."}]
        for i in range(n)
    ]  # fmt: skip


async def run(backend: HFLocalBackend, batch: list, sampling: Sampling) -> tuple[float, int, list[str]]:
    start = time.perf_counter()
    results = await asyncio.gather(*(backend.chat(messages, sampling) for messages in batch))
    seconds = time.perf_counter() - start
    await backend.aclose()
    return seconds, sum(r.completion_tokens for r in results), [r.text for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--model", default="embedded:smollm2", help="backend.model (any local HF folder)")
    args = parser.parse_args()
    batch, sampling = requests(args.requests), Sampling(temperature=0.0, max_tokens=args.max_tokens)
    batched = HFLocalBackend(args.model, device="cpu", dtype=args.dtype, max_batch_size=args.requests,
                             max_wait_ms=50)  # fmt: skip
    single = HFLocalBackend(args.model, device="cpu", dtype=args.dtype, max_batch_size=1)
    batched.load()
    asyncio.run(run(single, batch[:1], Sampling(temperature=0.0, max_tokens=8)))  # warm-up
    single = HFLocalBackend(args.model, device="cpu", dtype=args.dtype, max_batch_size=1)
    b_seconds, b_tokens, b_texts = asyncio.run(run(batched, batch, sampling))
    s_seconds, s_tokens, s_texts = asyncio.run(run(single, batch, sampling))
    model, _ = batched.load()
    b_rate, s_rate = b_tokens / b_seconds, s_tokens / s_seconds
    print(json.dumps({
        "benchmark": "agents_hf_local", "requests": args.requests, "max_tokens": args.max_tokens,
        "dtype": str(next(model.parameters()).dtype), "greedy": True,
        "batched": {"seconds": round(b_seconds, 2), "tokens": b_tokens, "tokens_per_s": round(b_rate, 1),
                    "generate_calls": batched.generate_calls},
        "one_at_a_time": {"seconds": round(s_seconds, 2), "tokens": s_tokens, "tokens_per_s": round(s_rate, 1),
                          "generate_calls": single.generate_calls},
        "same_texts": sum(a == b for a, b in zip(b_texts, s_texts, strict=True)),
        "ratio": round(b_rate / s_rate, 2), "target": ">= 3.5",
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
