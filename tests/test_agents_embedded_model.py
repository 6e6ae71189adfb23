"""The embedded default chat model loads offline from the packaged GGUF and answers coherently."""

from __future__ import annotations

import pytest
import torch

from conf.paths import EMBEDDED_CHAT_MODEL, resolve_model_path, smollm2_gguf
from training.modeling import load_model_and_tokenizer, pick_device, pick_dtype


def test_embedded_alias_resolves_to_converted_checkpoint(smollm2_dir):
    assert smollm2_gguf().stat().st_size > 50_000_000
    assert resolve_model_path(EMBEDDED_CHAT_MODEL) == str(smollm2_dir)
    assert (smollm2_dir / "config.json").is_file() and (smollm2_dir / "model.safetensors").is_file()
    assert resolve_model_path("some/other-model") == "some/other-model"


@pytest.mark.slow
def test_real_smollm2_generates_offline(smollm2_dir):
    model, tokenizer = load_model_and_tokenizer(EMBEDDED_CHAT_MODEL, device="cpu", dtype="fp32")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_device_and_precision_selection(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pick_dtype("auto", cpu) == torch.float32
    assert pick_dtype("bf16", cpu) == torch.bfloat16
    assert pick_device("cpu") == cpu
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_dtype("fp8-ish", cpu)
    # The GPU path, as a CUDA machine would see it: auto picks cuda, and bf16 where the card supports it.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_device("auto") == cuda
    assert pick_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert pick_dtype("auto", cuda) == torch.float32
