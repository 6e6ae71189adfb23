"""hf_local: concurrent requests share one generate call, each row keeps its own sampling and token limit."""

from __future__ import annotations

import asyncio

import pytest
import torch

from agents.backends.base import Sampling
from agents.backends.hf_local import HFLocalBackend, _PerRowSampling
from conf.devices import pick_dtype, pick_inference_dtype
from conf.errors import UserError

MESSAGES = [{"role": "user", "content": "Tell me about the weather in Paris in spring."}]


def _run(backend: HFLocalBackend, requests: list[tuple[list, Sampling]]):
    async def main():
        try:
            return await asyncio.gather(*(backend.chat(m, s) for m, s in requests))
        finally:
            await backend.aclose()

    return asyncio.run(main())


def test_mixed_sampling_settings_share_one_generate_call(tiny_model_dir):
    backend = HFLocalBackend(str(tiny_model_dir), device="cpu", dtype="float32", max_batch_size=8, max_wait_ms=50)
    samplings = [Sampling(temperature=0.0, max_tokens=5), Sampling(temperature=1.0, max_tokens=12, top_p=0.9),
                 Sampling(temperature=0.7, max_tokens=3), Sampling(temperature=0.0, max_tokens=12)]  # fmt: skip
    results = _run(backend, [(MESSAGES, s) for s in samplings])
    assert backend.generate_calls == 1 and backend.batch_sizes == [4]
    for sampling, completion in zip(samplings, results, strict=True):
        assert 0 < completion.completion_tokens <= sampling.max_tokens
        assert completion.prompt_tokens > 10 and completion.extra["batch"] == 4
    # greedy rows in a sampled batch equal the one-at-a-time greedy answer (a random tiny model rarely hits EOS)
    alone = HFLocalBackend(str(tiny_model_dir), device="cpu", dtype="float32", max_batch_size=1)
    (single,) = _run(alone, [(MESSAGES, Sampling(temperature=0.0, max_tokens=12))])
    assert results[3].text == single.text


def test_different_seeds_are_split_and_seeded_sampling_repeats(tiny_model_dir):
    backend = HFLocalBackend(str(tiny_model_dir), device="cpu", dtype="float32", max_batch_size=8, max_wait_ms=50)
    seeded = [Sampling(temperature=1.0, max_tokens=8, seed=1), Sampling(temperature=1.0, max_tokens=8, seed=2)]
    first = _run(backend, [(MESSAGES, s) for s in seeded])
    assert backend.batch_sizes == [1, 1]
    backend = HFLocalBackend(str(tiny_model_dir), device="cpu", dtype="float32", max_batch_size=8, max_wait_ms=50)
    again = _run(backend, [(MESSAGES, seeded[0])])
    assert again[0].text == first[0].text


def test_per_row_sampling_processor_masks():
    scores = torch.tensor([[1.0, 3.0, 2.0, 0.0], [1.0, 3.0, 2.0, 0.0], [1.0, 3.0, 2.0, 0.0]])
    processor = _PerRowSampling([Sampling(temperature=0.0), Sampling(temperature=2.0), Sampling(top_p=0.5)])
    out = processor(None, scores)
    assert torch.isinf(out[0]).tolist() == [True, False, True, True]  # greedy: only the argmax survives
    assert torch.allclose(out[1], scores[1] / 2)  # temperature
    assert torch.isinf(out[2]).tolist() == [True, False, True, True]  # top_p 0.5: token 1 alone has p > 0.5


def test_dtype_selection_and_bad_values():
    cpu = torch.device("cpu")
    assert pick_dtype("auto", cpu) == torch.float32  # training stays fp32 on CPU
    assert pick_inference_dtype("float32", cpu) == torch.float32
    assert pick_inference_dtype("auto", cpu) in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_inference_dtype("int3", cpu)
    with pytest.raises(UserError, match="max_batch_size"):
        HFLocalBackend("embedded:smollm2", device="cpu", max_batch_size=0)


def test_prefix_is_continued_and_returned(tiny_model_dir):
    """A reply made to begin with "Rating:" is generated after that text (greedy differs) and returned with it."""
    backend = HFLocalBackend(str(tiny_model_dir), device="cpu", dtype="float32", max_batch_size=2, max_wait_ms=50)
    plain, prefixed = _run(
        backend,
        [(MESSAGES, Sampling(temperature=0.0, max_tokens=8)),
         (MESSAGES, Sampling(temperature=0.0, max_tokens=8, prefix="Rating:"))],
    )  # fmt: skip
    assert prefixed.text.startswith("Rating:") and not plain.text.startswith("Rating:")
    assert prefixed.prompt_tokens > plain.prompt_tokens
