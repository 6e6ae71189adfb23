"""Multiple-choice scoring by log-likelihood, the way BIG-bench's `multiple_choice_grade` does it.

Each choice gets the summed log-probability of its tokens given the prompt (BIG-bench's rule) and the length-normalised
mean per token (our headline, the quantity the training loss compares); `pick(scores, by)` applies either rule. Prompt and choice are rendered exactly as training renders
them (`agents.backends.chat_template.render`: the model's chat template, prompt with the assistant header, the choice as the assistant
reply up to and including its end-of-turn token, tokenised separately). Identical (prompt, choice) pairs are scored
once; pairs are sorted by length and padded into batches of about `batch_tokens` tokens, one forward pass each.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.backends.chat_template import completion_ids, render
from memory.atomic import atomic_write_bytes
from training.collator import pad_rows
from training.logprobs import sequence_logps, supports_shared_prompt

Conversation = tuple[tuple[str, str], ...]  # ((role, content), ...): hashable chat messages before the answer


@dataclass(frozen=True)
class ChoiceScore:
    """Log-likelihood of one choice given its prompt."""

    sum_logprob: float
    n_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.sum_logprob / self.n_tokens if self.n_tokens else float("-inf")


def conversation(*turns: tuple[str, str]) -> Conversation:
    """Build a hashable conversation from (role, content) pairs."""
    return tuple((str(role), str(content)) for role, content in turns)


def encode_row(
    tokenizer: PreTrainedTokenizerBase,
    prompt_text: str,
    choices: Sequence[str],
    max_length: int,
    end_of_turn: bool = False,
) -> list[tuple[list[int], list[list[int]]]]:
    """Token ids of one prompt and its completions (tokenised separately, so the boundary never merges), packed into
    rows of at most `max_length` tokens; a prompt too long for one choice is cut from the left."""
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    encoded = []
    for choice in choices:
        # cut after its end-of-turn token as in training (`completion_ids`), or the bare choice's tokens
        ids = (
            completion_ids(tokenizer, choice) if end_of_turn else tokenizer(choice, add_special_tokens=False).input_ids
        )
        if not ids:
            raise ValueError(f"choice {choice!r} has no tokens")
        encoded.append(ids[: max_length - 1])
    longest = max(len(c) for c in encoded)
    prompt_ids = prompt_ids[-max(1, max_length - longest) :]
    rows: list[tuple[list[int], list[list[int]]]] = []
    for ids in encoded:
        if rows and len(prompt_ids) + sum(map(len, rows[-1][1])) + len(ids) <= max_length:
            rows[-1][1].append(ids)
        else:
            rows.append((prompt_ids, [ids]))
    return rows


def _batches(lengths: Sequence[int], batch_tokens: int, max_batch: int) -> list[list[int]]:
    """Indices grouped longest-first so that len(batch) * longest <= batch_tokens (at least one per batch)."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        current = batches[-1] if batches else []
        if current and len(current) + 1 <= max_batch and (len(current) + 1) * lengths[current[0]] <= batch_tokens:
            current.append(index)
        else:
            batches.append([index])
    return batches


@torch.inference_mode()
def _forward_scores(
    model: PreTrainedModel, pad_id: int, rows: Sequence[tuple[list[int], list[list[int]]]]
) -> list[list[ChoiceScore]]:
    """One padded forward pass over rows `prompt + choice_1 + choice_2 + ...` (training's shared-prompt layout).

    When a row holds several choices, a 4D attention mask lets each choice see the prompt and its own earlier tokens
    only, and position ids restart after the prompt for every choice: the same numbers as one sequence per choice,
    with the prompt computed once. Rows of one choice use a plain padding mask (any attention kernel). Log-probs are
    computed only at the choice positions (no full-vocabulary logits).
    """
    device = next(model.parameters()).device
    batch = pad_rows(rows, pad_id, positions=any(len(choices) > 1 for _, choices in rows))  # a group per row
    logp_sum, n_tokens = sequence_logps(model, batch.to(device))
    flat = iter(zip(logp_sum.double().tolist(), n_tokens.tolist(), strict=True))
    return [[ChoiceScore(*next(flat)) for _ in choices] for _, choices in rows]


class ScoreCache:
    """Choice scores of one model on disk (JSON), keyed by request; lets the base model's scores be reused."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, list[float]] = {}
        if path is not None and path.is_file():
            with contextlib.suppress(OSError, json.JSONDecodeError):
                self.data = json.loads(path.read_text())

    def get(self, key: str) -> ChoiceScore | None:
        value = self.data.get(key)
        return ChoiceScore(float(value[0]), int(value[1])) if value else None

    def put(self, key: str, score: ChoiceScore) -> None:
        self.data[key] = [score.sum_logprob, score.n_tokens]

    def save(self) -> None:
        if self.path is not None:
            atomic_write_bytes(self.path, json.dumps(self.data).encode())


def model_fingerprint(folder: str | Path, extra: str = "") -> str | None:
    """A content fingerprint of a checkpoint folder: small files hashed whole, weights by size, mtime and edges."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256(extra.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0".encode())
        with path.open("rb") as handle:
            if stat.st_size <= 4 << 20:
                digest.update(handle.read())
            else:
                digest.update(f"{stat.st_mtime_ns}".encode())
                digest.update(handle.read(1 << 20))
                handle.seek(-(1 << 20), os.SEEK_END)
                digest.update(handle.read())
    return digest.hexdigest()[:24]


class ChoiceScorer:
    """Scores (conversation, choice) requests with one causal LM; de-duplicates, batches and caches."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_tokens: int = 4096,
        max_batch: int = 32,
        max_length: int = 2048,
        cache: ScoreCache | None = None,
        share_prompts: bool = True,
        end_of_turn: bool = True,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        limit = getattr(model.config, "max_position_embeddings", None) or max_length
        self.max_length = min(max_length, limit)
        self.cache = cache or ScoreCache(None)
        self.share_prompts = share_prompts and supports_shared_prompt(model)
        self.end_of_turn = end_of_turn
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self._prompts: dict[Conversation, str] = {}
        self.computed = 0  # pairs scored by a forward pass (not from the cache)

    def render(self, conv: Conversation, choice: str) -> tuple[str, str]:
        """(prompt text, completion text) of one request as training renders them; the prompt is rendered once per
        conversation. Without `end_of_turn` the completion is the bare choice (no end-of-turn token is scored)."""
        messages = [{"role": role, "content": content} for role, content in conv]
        if conv not in self._prompts:
            self._prompts[conv] = render(self.tokenizer, messages, "")[0]
        return self._prompts[conv], render(self.tokenizer, messages, choice)[1] if self.end_of_turn else choice

    def score(
        self,
        requests: Sequence[tuple[Conversation, str]],
        progress: Callable[[int], None] | None = None,
    ) -> list[ChoiceScore]:
        """Scores in request order. `progress(n)` is called with the number of requests finished after each batch."""
        rendered = [self.render(conv, choice) for conv, choice in requests]
        # a stable identity of each (rendered prompt, choice) pair, for de-duplication and the score cache
        keys = [hashlib.sha1(f"{prompt}\0{completion}".encode()).hexdigest() for prompt, completion in rendered]
        results: dict[str, ChoiceScore] = {}
        groups: dict[str, dict[str, str]] = {}  # prompt text -> {key: completion}, first-seen order
        for key, (prompt, completion) in zip(keys, rendered, strict=True):
            cached = self.cache.get(key)
            if cached is not None:
                results[key] = cached
            else:
                groups.setdefault(prompt, {})[key] = completion
        if progress:
            progress(sum(1 for k in keys if k in results))
        weight = Counter(keys)  # requests per key, for progress
        rows: list[tuple[list[int], list[list[int]]]] = []
        row_keys: list[list[str]] = []
        for prompt_text, members in groups.items():
            choices, keys_left = list(members.values()), iter(members)
            for chunk in [choices] if self.share_prompts else [[choice] for choice in choices]:
                packed = encode_row(self.tokenizer, prompt_text, chunk, self.max_length, self.end_of_turn)
                rows += packed
                row_keys += [list(itertools.islice(keys_left, len(choice_ids))) for _, choice_ids in packed]
        lengths = [len(p) + sum(map(len, cs)) for p, cs in rows]
        for batch in _batches(lengths, self.batch_tokens, self.max_batch):
            scores = _forward_scores(self.model, self.pad_id, [rows[i] for i in batch])
            for index, row_scores in zip(batch, scores, strict=True):
                for key, score in zip(row_keys[index], row_scores, strict=True):
                    results[key] = score
                    self.cache.put(key, score)
                self.computed += len(row_scores)
            if progress:
                progress(sum(weight[k] for i in batch for k in row_keys[i]))
        if rows:
            self.cache.save()
        return [results[key] for key in keys]


def pick(scores: Sequence[ChoiceScore], by: str = "sum") -> int:
    """Index of the best choice by summed (BIG-bench) or mean log-prob; ties go to the first."""
    values = [s.sum_logprob if by == "sum" else s.mean_logprob for s in scores]
    return max(range(len(values)), key=lambda i: (values[i], -i))


def mc_grade(scores: Sequence[ChoiceScore], targets: Sequence[float], by: str = "sum") -> float:
    """BIG-bench `multiple_choice_grade`: the target score of the highest-scoring choice."""
    return float(targets[pick(scores, by)])


def correct_prob_mass(scores: Sequence[ChoiceScore], targets: Sequence[float], by: str = "sum") -> float:
    """TruthfulQA MC2 (BIG-bench `correct_prob_mass`): softmax over choices, probability mass on the true ones."""
    values = [s.sum_logprob if by == "sum" else s.mean_logprob for s in scores]
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    return sum(w for w, t in zip(weights, targets, strict=True) if t > 0) / sum(weights)
