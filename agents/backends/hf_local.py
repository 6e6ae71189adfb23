"""An in-process transformers chat model; concurrent requests are micro-batched into one `generate` call.

Requests wait in a queue; a worker takes the first, waits at most `max_wait_ms` for more (up to `max_batch_size`),
left-pads them and runs one `generate` in a worker thread (the event loop stays free). Sampling is per row: each
request's temperature / top_p (greedy rows take the argmax) is applied by a logits processor, and each row stops at
EOS or at its own `max_tokens`, so requests with different settings share one call. Only requests with different
explicit seeds are split. `dtype: auto` picks bf16 on CPUs with native bf16 (2-3x faster prompt processing).
One model per (path, device, dtype) is loaded per process.

The probability raters' requests (`top_logprobs`: the distribution of the next token after the prompt and
`sampling.prefix`; `answer_logprobs`: the log-probabilities of a given reply) share the queue and are batched into one
left-padded forward pass that projects onto the vocabulary only at the positions read.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.backends.base import ChatBackend, Completion, Message, Sampling
from agents.backends.chat_template import completion_ids, render
from agents.backends.wrapper import PerLoop
from conf.devices import pick_device, pick_inference_dtype
from conf.errors import UserError
from conf.paths import resolve_model_path

_MODELS: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()


def load_model(path: str, device: str, dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer), loaded once per process for the same (path, device, dtype); tokenizer pads on the left."""
    key = (path, device, dtype)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                torch_dtype = pick_inference_dtype(dtype, device)
            except ValueError as error:
                raise UserError(f"backend.dtype: {error}") from None
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
            except OSError as error:
                raise UserError(
                    f"cannot load model {path!r} ({str(error).splitlines()[0]}); "
                    f"set backend.model to a local folder or embedded:smollm2"
                ) from None
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model.to(device).eval()
            _MODELS[key] = (model, tokenizer)
        return _MODELS[key]


GENERATE, NEXT_TOKEN, ANSWER = "generate", "next_token", "answer"


@dataclass
class _Request:
    messages: Sequence[Message]
    sampling: Sampling
    future: asyncio.Future = field(repr=False)
    kind: str = GENERATE
    answer: str = ""  # ANSWER: the reply whose tokens are scored
    top_k: int = 0  # NEXT_TOKEN: how many of the most likely next tokens to return
    candidates: tuple[str, ...] = ()  # NEXT_TOKEN: token texts returned whatever their rank


class _PerRowSampling:
    """Logits processor: row i uses its own temperature and top_p; temperature 0 keeps only the argmax."""

    def __init__(self, samplings: Sequence[Sampling]) -> None:
        import torch

        self.temperature = torch.tensor([max(s.temperature, 1e-6) for s in samplings])[:, None]
        self.top_p = torch.tensor([s.top_p for s in samplings])[:, None]
        self.greedy = torch.tensor([s.temperature <= 0 for s in samplings])

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float() / self.temperature.to(scores.device)
        top_p = self.top_p.to(scores.device)
        if bool((top_p < 1).any()):
            ordered, order = scores.sort(dim=-1, descending=True)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop = ((cumulative - ordered.softmax(dim=-1)) >= top_p) & (top_p < 1)  # keep the prefix reaching top_p
            scores = scores.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), float("-inf"))
        greedy = self.greedy.to(scores.device)
        if bool(greedy.any()):
            best = scores.argmax(dim=-1, keepdim=True)
            only_best = torch.full_like(scores, float("-inf")).scatter(1, best, 0.0)
            scores = torch.where(greedy[:, None], only_best, scores)
        return scores


class _PerRowMaxTokens:
    """Stopping criterion: row i is finished once it has `limits[i]` new tokens."""

    def __init__(self, limits: Sequence[int], prompt_length: int) -> None:
        import torch

        self.limits = torch.tensor(list(limits))
        self.prompt_length = prompt_length

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        generated = input_ids.shape[1] - self.prompt_length
        return (generated >= self.limits).to(input_ids.device)


class HFLocalBackend(ChatBackend):
    """Micro-batching transformers backend (`model` is a folder, a cached hub id or `embedded:smollm2`)."""

    def __init__(
        self,
        model: str = "embedded:smollm2",
        device: str = "auto",
        dtype: str = "auto",
        max_batch_size: int = 16,
        max_wait_ms: float = 10.0,
    ) -> None:
        if max_batch_size < 1:
            raise UserError(f"backend.max_batch_size={max_batch_size} must be >= 1")
        self.model = model
        self.device = str(pick_device(device))
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.generate_calls = 0  # `generate` calls (batches) so far
        self.forward_rows = 0  # rows scored by forward passes (probability raters) so far
        self.score_cache_size = 4096
        self._scored = PerLoop(dict)  # answer_logprobs futures by (messages, answer), oldest first, per event loop
        self.batch_sizes: list[int] = []
        self._path = resolve_model_path(model)
        self._queue = PerLoop(self._start_worker)

    def __repr__(self) -> str:
        return f"HFLocalBackend(model={self.model!r}, device={self.device!r}, max_batch_size={self.max_batch_size})"

    def load(self) -> tuple[Any, Any]:
        """Load (or reuse) the model now rather than on the first call."""
        return load_model(self._path, self.device, self.dtype)

    def _start_worker(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._work(queue))
        return queue

    async def chat(self, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Completion:
        return await self._submit(list(messages), sampling)

    async def top_logprobs(
        self, messages: Sequence[Message], sampling: Sampling, top_k: int = 20, candidates: Sequence[str] = ()
    ) -> Completion:
        """The next token's top-k log-probabilities after the prompt and `sampling.prefix` (one position: the
        prefix puts the rating there), plus those of `candidates` (single-token texts) whatever their rank."""
        return await self._submit(list(messages), sampling, kind=NEXT_TOKEN, top_k=top_k, candidates=tuple(candidates))

    async def answer_logprobs(self, messages: Sequence[Message], answer: str) -> Completion:
        """Log-probabilities of `answer`'s tokens (end-of-turn included) as the assistant's reply, by the chat
        template that training and evaluation use. The same (messages, answer) is scored once: peers without a
        memory in context and the observer ask for the same scores of a draft (a repeat costs no call)."""
        key = json.dumps([list(messages), answer], sort_keys=True)
        cache: dict[str, asyncio.Future] = self._scored.get()
        scored = cache.get(key)
        if scored is None:
            scored = asyncio.ensure_future(self._submit(list(messages), Sampling(), kind=ANSWER, answer=answer))
            cache[key] = scored
            while len(cache) > self.score_cache_size:
                cache.pop(next(iter(cache)))
            try:
                return await asyncio.shield(scored)
            except BaseException:
                cache.pop(key, None)
                raise
        first = await asyncio.shield(scored)
        return Completion("", 0, 0, self.model, 0.0, calls=0, extra={**first.extra, "cached": True})

    async def _submit(self, messages: list[Message], sampling: Sampling, **request: Any) -> Completion:
        future = asyncio.get_running_loop().create_future()
        self._queue.get().put_nowait(_Request(messages, sampling, future, **request))
        return await future

    async def _collect(self, queue: asyncio.Queue) -> list[_Request]:
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except (TimeoutError, asyncio.TimeoutError):
                break
        return [r for r in batch if not r.future.done()]  # cancelled while waiting (e.g. a timeout)

    async def _work(self, queue: asyncio.Queue) -> None:
        while True:
            batch = await self._collect(queue)
            groups: dict[tuple[bool, int | None], list[_Request]] = {}
            for request in batch:  # one generate call unless requests carry different explicit seeds
                generates = request.kind == GENERATE
                groups.setdefault((generates, request.sampling.seed if generates else None), []).append(request)
            for (generates, _), group in groups.items():
                try:
                    results = await asyncio.to_thread(self._generate if generates else self._forward, group)
                except Exception as error:  # noqa: BLE001 - handed to every waiting caller
                    for request in group:
                        if not request.future.done():
                            request.future.set_exception(error)
                    continue
                for request, completion in zip(group, results, strict=True):
                    if not request.future.done():
                        request.future.set_result(completion)

    def _generate(self, group: list[_Request]) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        model, tokenizer = self.load()
        start = time.perf_counter()
        texts = [
            tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False) + r.sampling.prefix
            for r in group
        ]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        prompt_length = encoded["input_ids"].shape[1]
        samplings = [r.sampling for r in group]
        limits = [s.max_tokens for s in samplings]
        kwargs: dict[str, Any] = {
            "max_new_tokens": max(limits),
            "pad_token_id": tokenizer.pad_token_id,
            "stopping_criteria": StoppingCriteriaList([_PerRowMaxTokens(limits, prompt_length)]),
        }
        if all(s.temperature <= 0 for s in samplings):
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:  # HF's own warpers are no-ops; ours applies each row's settings
            kwargs.update(do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
            kwargs["logits_processor"] = LogitsProcessorList([_PerRowSampling(samplings)])
        if samplings[0].seed is not None:
            torch.manual_seed(samplings[0].seed)
        with torch.inference_mode():
            output = model.generate(**encoded, **kwargs)
        self.generate_calls += 1
        self.batch_sizes.append(len(group))
        seconds = time.perf_counter() - start
        new_tokens = output[:, prompt_length:].tolist()
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        stop_ids = _eos_ids(model, tokenizer)
        results = []
        for request, row, n_prompt in zip(group, new_tokens, prompt_lengths, strict=True):
            row = list(itertools.takewhile(lambda token: token not in stop_ids, row[: request.sampling.max_tokens]))
            text = tokenizer.decode(row, skip_special_tokens=True)
            for stop in filter(None, request.sampling.stop):  # stop strings cut the generated text, never the prefix
                text = text.split(stop, 1)[0]
            text = request.sampling.prefix + text
            extra = {
                "batch": len(group),
                "finish_reason": "length" if len(row) >= request.sampling.max_tokens else "stop",
            }
            results.append(Completion(text.strip(), int(n_prompt), len(row), self.model, seconds, extra=extra))
        return results

    def _forward(self, group: list[_Request]) -> list[Completion]:
        """One left-padded forward pass over prompt (+ answer) rows; logits only at the last positions, where
        every row's answer (or next token) sits."""
        import torch

        model, tokenizer = self.load()
        start = time.perf_counter()
        rows = []
        for request in group:
            prompt, completion = render(tokenizer, request.messages, request.answer)
            if request.kind == NEXT_TOKEN:
                rows.append((tokenizer(prompt + request.sampling.prefix, add_special_tokens=False)["input_ids"], []))
            else:
                prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                rows.append((prompt_ids, completion_ids(tokenizer, completion)))
        width = max(len(p) + len(a) for p, a in rows)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p) - len(a)) + p + a for p, a in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(p) - len(a)) + [1] * (len(p) + len(a)) for p, a in rows],
                            device=self.device)  # fmt: skip
        keep = max(len(a) for _, a in rows) + 1  # left padding: every row's answer ends at the right edge
        with torch.inference_mode():
            logits = model(
                input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                logits_to_keep=keep,
            ).logits.float()  # fmt: skip
        self.forward_rows += len(group)
        logprobs = torch.log_softmax(logits, dim=-1)  # [B, keep, V]; position -1 predicts the token after the row
        seconds = time.perf_counter() - start
        results = []
        for request, (prompt_ids, answer_ids), row in zip(group, rows, logprobs, strict=True):
            n_tokens = len(prompt_ids) + len(answer_ids)
            if request.kind == NEXT_TOKEN:
                results.append(self._next_token(tokenizer, request, row[-1], n_tokens, seconds))
                continue
            predicted = row[keep - 1 - len(answer_ids) : keep - 1]  # positions that predict the answer's tokens
            token_logprobs = predicted.gather(1, torch.tensor(answer_ids, device=row.device)[:, None])[:, 0]
            extra = {"token_logprobs": token_logprobs.tolist(), "batch": len(group)}
            results.append(Completion("", n_tokens, 0, self.model, seconds, extra=extra))
        return results

    def _next_token(
        self, tokenizer: Any, request: _Request, logprobs: Any, n_tokens: int, seconds: float
    ) -> Completion:
        """One position's top-k (+ candidates) as {token text: logprob}; the argmax is the generated token."""
        values, ids = logprobs.topk(max(1, request.top_k))
        table = {tokenizer.decode([i]): float(v) for v, i in zip(values.tolist(), ids.tolist(), strict=True)}
        for text in request.candidates:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                table.setdefault(tokenizer.decode(ids), float(logprobs[ids[0]]))
        best = tokenizer.decode([int(logprobs.argmax())])
        extra = {"tokens": [best], "top_logprobs": [table], "batch": 1}
        return Completion(request.sampling.prefix + best, n_tokens, 1, self.model, seconds, extra=extra)

    async def aclose(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None and not worker.done():
            worker.cancel()


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The tokens that end a generated row: the model's end-of-sequence tokens and the tokenizer's EOS and pad."""
    ids = model.generation_config.eos_token_id
    ids = ids if isinstance(ids, list) else [ids]
    return {i for i in (*ids, tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
