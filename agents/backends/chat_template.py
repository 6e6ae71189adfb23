"""The one chat rendering shared by training, evaluation and the in-process likelihood rater.

`render` gives (prompt text, completion text) as the tokenizer's chat template writes them: the prompt with the
assistant header (`add_generation_prompt`), the completion up to and including the end-of-turn token, so what a
model is trained on is what it is scored on. Models without a template get a plain transcript.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def render(tokenizer: Any, messages: Sequence[dict[str, str]], response: str) -> tuple[str, str]:
    """(prompt text, completion text) as the chat template writes them; a plain fallback for template-less models."""
    eos = tokenizer.eos_token or ""
    messages = list(messages)
    if tokenizer.chat_template:
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": response}], tokenize=False)
        if full.startswith(prompt):
            completion = full[len(prompt) :]
            return prompt, completion if eos in completion else completion + eos
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}  # as training/eval renders prompts
    prompt = "".join(f"\n{names.get(m['role'], m['role'])}: {m['content']}" for m in messages) + "\nAssistant: "
    return prompt, response + eos


def completion_ids(tokenizer: Any, completion: str) -> list[int]:
    """Token ids of the completion, cut after its last EOS (the template's trailing newline is not a target)."""
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and eos in ids:
        ids = ids[: len(ids) - ids[::-1].index(eos)]
    return ids
