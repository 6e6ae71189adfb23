"""A resume must not change how the world rates or who lives in it: rater settings and society groups are part of
`world.json`; a folder written before those keys existed resumes only with what it was made with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conf import CONFIG_DIR
from conf.cli import UserError
from environment.build import config_fingerprint
from environment.simulate import WORLD, check_fingerprint


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="simulate", overrides=list(overrides))


def old_world_json(folder: Path) -> None:
    """world.json as sa-simulate wrote it before rater settings and society groups were recorded."""
    fingerprint = config_fingerprint(config())
    for key in ("rater", "observer_rater_mode", "society"):
        fingerprint.pop(key)
    (folder / WORLD).write_text(json.dumps(fingerprint), encoding="utf-8")


def test_an_old_folder_resumes_with_what_it_was_made_with(tmp_path: Path) -> None:
    old_world_json(tmp_path)
    check_fingerprint(tmp_path, config())  # generated ratings, no society groups: what it was made with
    for overrides, key in [(("rater=likelihood",), "rater"), (("observer.rater_mode=logprob",), "observer_rater_mode"),
                           (("preset=demo",), "society")]:  # fmt: skip
        with pytest.raises(UserError, match=key):
            check_fingerprint(tmp_path, config(*overrides))


def test_a_resume_with_another_rater_or_persona_mix_refuses(tmp_path: Path) -> None:
    made = config("preset=demo")
    (tmp_path / WORLD).write_text(json.dumps(config_fingerprint(made)), encoding="utf-8")
    check_fingerprint(tmp_path, made)
    with pytest.raises(UserError, match=r"\(rater\)"):
        check_fingerprint(tmp_path, config("preset=demo", "rater.temperature=0.1"))
    with pytest.raises(UserError, match=r"\(society\)"):
        check_fingerprint(tmp_path, config("preset=demo", "society.groups.0.persona=deceptive"))
