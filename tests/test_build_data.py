"""sa-build-data on the fixture episode file: counts, invalid-rating drop, de-duplication, ratios, loadable output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conf import CONFIG_DIR
from conf.cli import UserError
from training.build_data import build

FIXTURE = Path(__file__).parent / "data" / "episodes_fixture.jsonl"
INVALID_REASONS = {"garbled output", "unparseable", "format broken"}  # reasons attached to invalid peer ratings


def config(tmp_path: Path, inputs: list, **overrides) -> OmegaConf:
    cfg = OmegaConf.load(CONFIG_DIR / "build_data.yaml")
    cfg.output_dir = str(tmp_path / "data")
    cfg.inputs = [str(p) for p in inputs]
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def read_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]


def test_counts_invalid_drop_and_dedup_on_fixture(tmp_path):
    card = build(config(tmp_path, [FIXTURE], **{"mix.ratio": None}))
    # 8 lines, line 7 repeats line 1 exactly; 5 null/invalid ratings: 2 null peers, 1 peer valid=false with a
    # number, 1 null observer draft score, 1 null observer revision score.
    assert card["episodes"] == 7
    assert card["dropped"] == {"invalid_ratings": 5, "duplicate_episodes": 1, "duplicate_responses": 1}
    assert card["groups_per_kind"] == {"imitation": 3, "self_critic": 6, "realignment": 2}
    assert card["responses_per_kind"] == {"imitation": 11, "self_critic": 10, "realignment": 2}
    rows = read_rows(tmp_path / "data")
    by_prompt = {(r["kind"], r["prompt"]): r for r in rows}
    q1 = by_prompt[("imitation", "Is it okay to lie to a friend to spare their feelings?")]
    # w1 draft 2, w1 revision 6, w1 round-1 revision 7 (its draft score is null: dropped), w2's identical draft
    # dropped as a duplicate response, w2 revision 3 — pooled across worlds with provenance.
    assert [r["rating"] for r in q1["responses"]] == [2, 6, 7, 3]
    assert [(r["world_id"], r["round"], r["agent_id"], r["source"]) for r in q1["responses"]] == [
        ("w1", 0, 0, "draft"), ("w1", 0, 0, "revision"), ("w1", 1, 0, "revision"), ("w2", 0, 0, "revision"),
    ]  # fmt: skip
    assert {r["model"] for r in q1["responses"]} == {"m-bad", "m-good"}
    # invalid ratings never become numbers: no response carries an invalid rater's reason, every rating is 1..7
    for row in rows:
        for response in row["responses"]:
            assert response["text"] not in INVALID_REASONS
            assert isinstance(response["rating"], int) and 1 <= response["rating"] <= 7
    # realignment: one sample per interaction with all valid feedback (not one per peer), rating = revision score
    realign = sorted((r for r in rows if r["kind"] == "realignment"), key=lambda r: r["responses"][0]["rating"])
    assert [len(r["responses"]) for r in realign] == [1, 1]
    assert [r["responses"][0]["rating"] for r in realign] == [5, 6]
    text = realign[1]["responses"][0]["text"]
    assert "Rated 3/7" in text and "Rated 2/7" in text and "garbled" not in text
    assert text.index("Rated 3/7") < text.index("Rated 2/7")  # lowest-rated last, as the agent saw it
    assert text.rstrip().endswith("honesty usually protects the friendship better.")
    md = (tmp_path / "data" / "data_card.md").read_text()
    assert "episodes read: 7" in md and "5 invalid (null) ratings" in md
    assert json.loads((tmp_path / "data" / "data_card.json").read_text())["groups"] == 11


def test_output_loads_with_datasets(tmp_path):
    from datasets import load_dataset

    build(config(tmp_path, [FIXTURE], format="both"))
    for kind, name in (("json", "train.jsonl"), ("parquet", "train.parquet")):
        dataset = load_dataset(kind, data_files=str(tmp_path / "data" / name), split="train")
        assert len(dataset) == 5
        assert {"messages", "responses", "stage", "kind", "group_id"} <= set(dataset.column_names)
        assert dataset[0]["messages"][0]["role"] == "user"


def test_merged_worlds_are_deduplicated_but_reused_world_ids_are_kept(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    other = tmp_path / "run2" / "episodes.jsonl"
    other.parent.mkdir()
    reused = json.loads(lines[1])  # same (world, round, agent) as line 2 but a different interaction
    reused["draft"]["text"] = "Accents are charming and irrelevant to competence."
    other.write_text("\n".join([lines[0], lines[4], json.dumps(reused)]) + "\n")
    # the fixture twice (file + a copy), plus a second run folder holding two repeats and one new interaction
    copy = tmp_path / "copy.jsonl"
    copy.write_text(FIXTURE.read_text())
    card = build(config(tmp_path, [FIXTURE, copy, tmp_path / "run2"], **{"mix.ratio": None}))
    assert card["episodes"] == 8
    assert card["dropped"]["duplicate_episodes"] == 1 + 8 + 2
    assert card["responses_per_kind"]["imitation"] == 12  # the new draft joins q2's group


def synthetic_episodes(path: Path, questions: int = 10, per_question: int = 3) -> None:
    """questions × per_question episodes: every draft distinct, every revision improves to 6 (realignment)."""
    records = []
    for q in range(questions):
        for a in range(per_question):
            records.append({
                "schema_version": 1, "world_id": "s", "round": q, "agent_id": a, "position": [0, a],
                "agent_model": f"m{a}", "question_id": f"q{q}", "question": f"Question {q}?",
                "draft": {"text": f"draft {q}-{a}", "memory_hits": []},
                "feedback": [{"peer_id": 9, "peer_model": "m0", "rating": 3, "reason": f"reason {q}-{a}", "valid": True}],
                "revision": {"text": f"revision {q}-{a}"},
                "observer": {"draft": {"alignment": 2, "engagement": 3, "reasons": ""},
                             "revision": {"alignment": 6, "engagement": 5, "reasons": ""}},
                "usage": {"calls": 1, "prompt_tokens": 1, "completion_tokens": 1, "seconds": 0.1},
            })  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_default_ratio_is_5_1_1_in_groups_and_staged_order(tmp_path):
    episodes = tmp_path / "episodes.jsonl"
    synthetic_episodes(episodes)  # 10 imitation groups, 30 self-critic groups, 30 realignment groups
    card = build(config(tmp_path, [episodes], **{"mix.staged": True}))
    assert card["groups_per_kind_before_mix"] == {"imitation": 10, "self_critic": 30, "realignment": 30}
    assert card["groups_per_kind"] == {"imitation": 10, "self_critic": 2, "realignment": 2}
    stages = [(r["kind"], r["stage"]) for r in read_rows(tmp_path / "data")]
    assert stages == [("imitation", 0)] * 10 + [("self_critic", 1)] * 2 + [("realignment", 2)] * 2
    card = build(config(tmp_path, [episodes], **{"mix.ratio": {"imitation": 1, "self_critic": 1, "realignment": 0}}))
    assert card["groups_per_kind"] == {"imitation": 10, "self_critic": 10}


def test_bad_inputs_give_one_line_errors_and_overwrite_nothing(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "train.jsonl").write_text("keep me\n")
    with pytest.raises(UserError, match="not found"):
        build(config(tmp_path, [tmp_path / "missing.jsonl"]))
    corrupt = tmp_path / "bad.jsonl"
    corrupt.write_text('{"schema_version": 1}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:1"):
        build(config(tmp_path, [corrupt]))
    with pytest.raises(UserError, match="unknown kind"):
        build(config(tmp_path, [FIXTURE], **{"mix.ratio": {"imitation": 1, "critic": 1}}))
    assert (out / "train.jsonl").read_text() == "keep me\n"


def test_console_script_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training.build_data", f"inputs=[{tmp_path}/nope.jsonl]", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "sa-build-data: error:" in result.stderr
