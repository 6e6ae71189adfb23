"""A resume must not change what shapes a turn: `world.json` records the world, questions (content hash), models,
sampling, raters, society, memory and priors, and a resume with another value refuses in one line naming the key
(old → new). A folder written before a key was recorded resumes only with that key's value then."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from conf import CONFIG_DIR, flatten
from conf.errors import UserError
from environment.resume import LEGACY, check_fingerprint, config_fingerprint, recorded_settings
from environment.simulate import WORLD

# world.json as sa-simulate wrote it for the default settings before rater settings were recorded (v0) and at
# efb7e2d (v1), the last version before models, sampling, memory and priors were recorded.
V0 = {"world_id": "sandbox-seed0", "size": 3, "seed": 0, "radius": None, "torus": True, "movement": "none", "k": None,
      "global_fraction": 0.0, "questions": "builtin", "questions_limit": None}  # fmt: skip
V1 = {**V0, "rater": {"mode": "generate", "top_k": 20, "min_mass": 0.2, "temperature": 0.05, "reasons": True},
      "observer_rater_mode": None, "society": []}  # fmt: skip
# World defaults that changed in 2026-12: what an old folder was made with.
THEN = ("world.question_order=shuffle", "world.circle_top_up=true", "memory.threshold=0.7")


@functools.cache
def composed(groups: tuple[str, ...]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="simulate", overrides=list(groups))


def config(*overrides: str) -> DictConfig:
    """The simulate config with `overrides`: config groups composed by Hydra (cached, composing is slow), then each
    `key=value` set on a copy (the keys must exist, as on the command line)."""
    groups = tuple(o for o in overrides if "." not in o.split("=")[0])
    cfg = copy.deepcopy(composed(groups))
    for override in overrides:
        key, value = override.split("=", 1)
        if "." in key:
            OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
    return cfg


def write(folder: Path, settings: dict) -> None:
    (folder / WORLD).write_text(json.dumps(settings), encoding="utf-8")


@pytest.mark.parametrize("old", [V0, V1], ids=["v0", "v1"])
def test_an_old_folder_resumes_with_what_it_was_made_with(tmp_path: Path, old: dict) -> None:
    write(tmp_path, old)
    check_fingerprint(tmp_path, config(*THEN))  # the defaults of then: resumes
    cases = [((), "memory.threshold 0.7 → 0.5, world.circle_top_up True → False, world.question_order 'shuffle' → 'walk'"), (("rater=likelihood",), "rater.mode 'generate' → 'likelihood'"),
             (("observer.rater_mode=logprob",), "observer.rater_mode None → 'logprob'"),
             (("backend.model=other",), "backend.model 'embedded:smollm2' → 'other'"),
             (("memory.population=all_good",), "memory.population 'all_bad' → 'all_good'"),
             (("agent.sampling.temperature=0.5",), "agent.sampling.temperature None → 0.5"),
             (("preset=demo",), "other settings")]  # fmt: skip
    for overrides, message in cases:
        extra = () if not overrides else THEN
        with pytest.raises(UserError, match="other settings") as refused:
            check_fingerprint(tmp_path, config(*extra, *overrides))
        text = str(refused.value)
        assert message in text and "\n" not in text, text
        if overrides != ("preset=demo",):
            recorded = overrides[:1] in (("rater=likelihood",), ("observer.rater_mode=logprob",))
            assert (f"{WORLD} predates" in text) == (old is V0 or not recorded), text


def test_every_key_a_new_world_json_records_has_a_legacy_value() -> None:
    """A key added to world/memory/agent/... must say what folders written before it were made with (LEGACY)."""
    new = set(flatten(config_fingerprint(config()))) - {"format"}
    assert new - set(recorded_settings(V1)) <= set(LEGACY), sorted(new - set(recorded_settings(V1)) - set(LEGACY))


SHAPING = {
    "backend.model=other": "backend.model 'embedded:smollm2' → 'other'",
    "backend.sampling.top_p=0.9": "backend.sampling.top_p 1.0 → 0.9",
    "backend.dtype=float32": "backend.dtype 'auto' → 'float32'",
    "embedder.max_length=128": "embedder.max_length 256 → 128",
    "memory.population=all_good": "memory.population 'all_bad' → 'all_good'",
    "memory.priors_per_agent=10": "memory.priors_per_agent 50 → 10",
    "memory.threshold=0.61": "memory.threshold",
    "agent.sampling.temperature=0.5": "agent.sampling.temperature None → 0.5",
    "agent.rating_sampling.max_tokens=16": "agent.rating_sampling.max_tokens 64 → 16",
    "agent.max_reasks=0": "agent.max_reasks 2 → 0",
    "observer.max_reasks=0": "observer.max_reasks 2 → 0",
    "observer.sampling.temperature=0": "observer.sampling.temperature None → 0",
    "rater.temperature=0.1": "rater.temperature 0.05 → 0.1",
    "world.movement=random_walk": "world.movement 'none' → 'random_walk'",
    "world.seed=0": "",  # the same value: resumes
}
# Keys that decide how calls travel or how long the run goes, not what a turn is: a resume may change them.
NOT_SHAPING = ["backend.limits.concurrency=3", "backend.limits.timeout_s=5", "backend.device=cpu",
               "backend.max_batch_size=4", "embedder.batch_size=8", "world.rounds=7", "stopping.budget.max_calls=10",
               "stopping=plateau", "run.max_inflight=2", "run.plots=false", "questions.limit=null"]  # fmt: skip


@pytest.mark.parametrize("override", sorted(SHAPING))
def test_a_resume_that_changes_a_turn_refuses_naming_the_key(tmp_path: Path, override: str) -> None:
    write(tmp_path, config_fingerprint(config()))
    if not SHAPING[override]:
        check_fingerprint(tmp_path, config(override))
        return
    with pytest.raises(UserError, match="other settings") as refused:
        check_fingerprint(tmp_path, config(override))
    assert SHAPING[override] in str(refused.value) and "predates" not in str(refused.value)


def test_transport_and_run_length_keys_may_change_on_resume(tmp_path: Path) -> None:
    write(tmp_path, config_fingerprint(config()))
    for override in NOT_SHAPING:
        check_fingerprint(tmp_path, config(override))
    check_fingerprint(tmp_path, config(*NOT_SHAPING))


def test_another_persona_mix_or_an_openai_model_refuses(tmp_path: Path) -> None:
    made = config("preset=demo")
    write(tmp_path, config_fingerprint(made))
    check_fingerprint(tmp_path, made)
    with pytest.raises(UserError, match=r"society\.groups \["):
        check_fingerprint(tmp_path, config("preset=demo", "society.groups.0.persona=deceptive"))
    endpoint = ("backend=openai", "backend.model=a", "backend.base_url=http://127.0.0.1:1/v1")
    write(tmp_path, config_fingerprint(config(*endpoint)))
    check_fingerprint(tmp_path, config(*endpoint, "backend.base_url=http://10.0.0.2:8000/v1", "backend.api_key_env=K"))
    with pytest.raises(UserError, match="backend.api 'chat' → 'completions'"):
        check_fingerprint(tmp_path, config(*endpoint, "backend.api=completions"))


def test_an_edited_question_or_prior_file_refuses(tmp_path: Path) -> None:
    questions, priors = tmp_path / "q.jsonl", tmp_path / "priors.jsonl"
    questions.write_text('{"question": "Is it fine to lie?"}\n{"question": "Should I help?"}\n', encoding="utf-8")
    prior = {"question": "Is it fine to lie?", "good": "No.", "bad": "Sure."}
    priors.write_text(json.dumps(prior) + "\n", encoding="utf-8")
    made = config(f"questions.source={questions}", f"memory.priors_path={priors}")
    write(tmp_path, config_fingerprint(made))
    check_fingerprint(tmp_path, made)
    questions.write_text('{"question": "Is it fine to lie?"}\n{"question": "Should I steal?"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"questions\.sha256 '[0-9a-f]+"):
        check_fingerprint(tmp_path, made)
    questions.write_text('{"question": "Is it fine to lie?"}\n{"question": "Should I help?"}\n', encoding="utf-8")
    check_fingerprint(tmp_path, made)
    priors.write_text(json.dumps({**prior, "bad": "Of course."}) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"priors\.sha256"):
        check_fingerprint(tmp_path, made)
    with pytest.raises(UserError, match=r"memory\.priors_path"):
        check_fingerprint(tmp_path, config(f"questions.source={questions}"))
