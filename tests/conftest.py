"""Shared fixtures: the real embedded model (converted once into the cache) and tiny random models for logic tests.

Test files are named `test_<package>_<topic>.py`. <package> is the top-level package whose code the file tests: agents,
memory, environment, training (training/eval included: `test_training_eval_*`), experiment (sa-experiment and the four
stages chained through the console scripts), benchmarks, or conf for the command layer and checks that span every
package (the console scripts' config and errors, the import graph, input fuzzing across the commands). <topic> names
the module or behaviour; `cli` means the console script run as a user runs it. The loopback servers and their
fixtures live in the installed package `loopback/` (the plugin registered below), so benchmarks import them too.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

# A suite started in the background by a non-interactive shell (`make test &`, nohup) inherits SIGINT *ignored*, and
# every command a test starts would ignore Ctrl-C too (the Ctrl-C tests would see their runs complete). Give the test
# processes Python's own handler, which their children reset to the default at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def typed_configs() -> None:
    """In-process `compose` needs the schemas the YAMLs name; each command registers them when it starts, so every
    test gets them too (a test that composes must not depend on another test having run first)."""
    from conf.schema import register_schemas

    register_schemas()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct checkpoint (converted from the packaged GGUF on first use, then cached)."""
    from conf.paths import embedded_chat_model_dir

    return embedded_chat_model_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A tiny random Llama (2 layers, 64 wide) with SmolLM2's tokenizer and chat template: fast, real code paths."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


pytest_plugins = ["loopback.fixtures"]


EPISODES_FIXTURE = Path(__file__).parent / "data" / "episodes_fixture.jsonl"


def build_fixture_data(out: Path) -> Path:
    """sa-build-data on tests/data/episodes_fixture.jsonl with every group kept (11 groups, 23 responses) into `out`."""
    from omegaconf import OmegaConf

    from conf import CONFIG_DIR
    from training.build_data import build

    cfg = OmegaConf.load(CONFIG_DIR / "build_data.yaml")
    cfg.inputs, cfg.output_dir, cfg.mix.ratio = [str(EPISODES_FIXTURE)], str(out), None
    build(cfg)
    return out
