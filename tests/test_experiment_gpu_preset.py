"""The gpu preset checked end to end without a GPU: conf/experiment/gpu.yaml with every override kept, only the vLLM
endpoint (→ the loopback OpenAI stub), the models (→ a tiny random model) and the sizes shrunk, runs every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conf import CONFIG_DIR
from tests.test_experiment_cli import run_experiment


def gpu_preset_on_tiny_model(folder: Path, url: str, model: Path) -> Path:
    """conf/experiment/gpu.yaml with every override kept, only the endpoint, the models and the sizes shrunk."""
    from omegaconf import OmegaConf

    preset = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "experiment" / "gpu.yaml"))
    vllm, served = "http://127.0.0.1:8000/v1", str(preset["base_model"])
    sizes = {
        "world.size=6": "world.size=3",
        "world.rounds=4": "world.rounds=1",
        "train.max_steps=200": "train.max_steps=2",
    }

    def shrink(overrides: list[str]) -> list[str]:
        kept = [sizes.get(o, o).replace(vllm, url).replace(f"model={served}", "model=stub") for o in overrides]
        assert kept != overrides, "the preset no longer names the vLLM endpoint or sizes this test replaces"
        return kept

    stub_embedder = ["embedder=openai", f"embedder.base_url={url}", "embedder.model=stub-embed", "embedder.dim=384"]
    preset.update(
        name="gpu-tiny",
        base_model=str(model),
        worlds=1,
        train_seeds=[0],
        simulate=[
            *shrink(preset["simulate"]),
            *stub_embedder,
            "memory.priors_per_agent=3",
            "run.progress=false",
            "run.plots=false",
        ],  # fmt: skip
        train=[
            *shrink(preset["train"]),
            "train.batch_size=2",
            "train.group_size=2",
            "train.max_length=128",
            "train.max_prompt_length=96",
        ],  # fmt: skip
        eval=[
            *shrink(preset["eval"]),
            "limit=3",
            "judge.limit=2",
            "judge.answer_sampling.max_tokens=8",
            "progress=false",
        ],  # fmt: skip
    )
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "gpu_tiny.yaml").write_text(json.dumps(preset), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_gpu_preset_runs_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir, openai_stub):
    """The gpu preset's own overrides (OpenAI backend for collection and judge, likelihood rater, five-persona society,
    bf16, every arm, every eval task) run through every stage; only the endpoint, the model and the sizes differ."""
    server = openai_stub()
    configs = gpu_preset_on_tiny_model(tmp_path / "conf", server.base_url, tiny_model_dir)
    result = run_experiment(tmp_path, configs, "gpu_tiny")
    assert len(result["stages"]) == 1 + 1 + 4 + 1  # a world, the data, four arms, the evaluation
    assert {"hhh", "hhh_adversarial", "truthful_qa_mc1", "moral_permissibility"} <= set(result["table"])
    world = next(Path(s["folder"]) for label, s in result["stages"].items() if label.startswith("world"))
    personas = {json.loads(line)["agent_persona"] for line in (world / "episodes.jsonl").read_text().splitlines()}
    assert len(personas) >= 3  # the mixed society of the preset, not the default
