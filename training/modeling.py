"""Load any Hugging Face causal LM with its tokenizer; pick device and precision without hard-coding either."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from conf.devices import pick_device, pick_dtype
from conf.paths import resolve_model_path

__all__ = ["load_model_and_tokenizer", "load_tokenizer", "mixed_precision", "pick_device", "pick_dtype"]


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token (falls back to EOS); its padding side is left as the model ships it (sa-train and
    sa-eval pad their batches themselves, on the right: `training.collator.pad_rows`)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(
    name_or_path: str, device: str = "auto", dtype: str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM (the embedded alias `embedded:smollm2` included) onto the chosen device and precision."""
    target = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name_or_path), dtype=pick_dtype(dtype, target))
    return model.to(target), load_tokenizer(name_or_path)


_MIXED = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "no"}


def mixed_precision(precision: str, device: torch.device) -> str:
    """The accelerate `mixed_precision` for a training run: `auto` → bf16 on a bf16-capable GPU, else no (fp32)."""
    return _MIXED[pick_dtype(precision, device)]
