"""sa-build-data on the fixture episode file: counts, invalid-rating drop, de-duplication, ratios, loadable output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conf import CONFIG_DIR
from conf.errors import UserError
from training.build_data import build, mix, rating_text

FIXTURE = Path(__file__).parent / "data" / "episodes_fixture.jsonl"
FLOATS = Path(__file__).parent / "data" / "episodes_floats.jsonl"  # float ratings, personas (one episode without)
ECHOES = Path(__file__).parent / "data" / "smollm2_answers.jsonl"  # real SmolLM2 answers, echoes of the protocol marked
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
    assert card["dropped"] == {
        "invalid_ratings": 5,
        "duplicate_episodes": 1,
        "duplicate_responses": 1,
        "protocol_echoes": 0,
    }
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
    # the fixture predates personas: every response carries persona null; its ratings have real gaps (no warning)
    assert all(r["persona"] is None for row in rows for r in row["responses"])
    assert card["responses_per_persona"] == {"(none)": 23}
    assert card["signal"]["groups"]["n_multi"] == 6 and card["signal"]["groups"]["tied_share"] == 0.0
    assert "signal_warning" not in card and "Warning" not in md


def test_float_ratings_personas_and_signal_section(tmp_path, capsys):
    card = build(config(tmp_path, [FLOATS], **{"mix.ratio": None}))
    rows = read_rows(tmp_path / "data")
    by_kind_prompt = {(r["kind"], r["prompt"].split("\n")[0]): r for r in rows}
    q1 = "Is it fair to read a partner's messages without asking?"
    imitation = by_kind_prompt[("imitation", q1)]["responses"]
    # floats end to end; persona = the episode's agent_persona, null for the episode that names none
    assert [(r["rating"], r["persona"]) for r in imitation] == [
        (2.25, "cautious teacher"), (5.5, "cautious teacher"), (4.25, None), (4.25, None),
    ]  # fmt: skip
    critic = [r for row in rows if row["kind"] == "self_critic" for r in row["responses"]]
    assert sorted((r["rating"], r["persona"] or "") for r in critic) == [
        (2.5, "blunt critic"), (3.0, "kind nurse"), (3.0, "kind nurse"), (4.25, ""), (4.3, "kind nurse"),
        (6.0, "cautious teacher"),
    ]  # fmt: skip  # self_critic: the feedback item's peer_persona
    (realign,) = [r for row in rows if row["kind"] == "realignment" for r in row["responses"]]
    assert realign["rating"] == 5.5 and realign["persona"] == "cautious teacher"
    text = realign["text"]
    assert "Rated 6/7" in text and "Rated 4.3/7" in text and "Rated 2.5/7" in text
    assert text.index("Rated 6/7") < text.index("Rated 4.3/7") < text.index("Rated 2.5/7")
    assert card["responses_per_persona"] == {"cautious teacher": 4, "blunt critic": 3, "kind nurse": 3, "(none)": 3}
    # groups: imitation q1 [2.25, 5.5, 4.25, 4.25], q2 [3, 3.5], critic [2.5, 4.3, 6], [4.25], [3, 3], realign [5.5]
    groups = card["signal"]["groups"]
    assert (groups["n_groups"], groups["n_multi"], groups["tied_share"]) == (6, 4, 0.25)
    gaps = [5.5 - (2.25 + 4.25 + 4.25) / 3, 0.5, 6 - (2.5 + 4.3) / 2, 0.0]
    assert groups["mean_gap"] == pytest.approx(sum(gaps) / 4, abs=1e-4)
    assert groups["histogram"] == {"2.5": 2, "3": 3, "3.5": 1, "4.5": 4, "5.5": 2, "6": 1}
    episodes = card["signal"]["episodes"]
    assert episodes["records"] == 3 and episodes["peer"]["valid_share"] == pytest.approx(6 / 7, abs=1e-4)
    # peer mean per draft [4.27, 4.25, 3] vs observer draft [2.25, 4.25, 3]: ranks [3, 2, 1] vs [1, 3, 2]
    assert episodes["peer_observer_agreement"] == {"spearman": -0.5, "n": 3, "identical_share": 0.6667}
    assert episodes["tied_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert "signal_warning" not in card and "warning" not in capsys.readouterr().err
    md = (tmp_path / "data" / "data_card.md").read_text()
    assert "### Responses per persona" in md and "| kind nurse | 3 |" in md and "| (none) | 3 |" in md
    assert "### Signal" in md and "- 1 of 4 groups with ≥2 responses tie (25%)" in md
    assert "peer–observer agreement (Spearman, per draft): -0.50 over 3 drafts" in md
    saved = json.loads((tmp_path / "data" / "data_card.json").read_text())
    assert saved["signal"] == card["signal"] and saved["responses_per_persona"] == card["responses_per_persona"]


def test_rating_text_one_decimal_for_non_integers():
    assert [rating_text(v) for v in (5, 6.0, 4.3, 2.5, 1.04)] == ["5", "6", "4.3", "2.5", "1.0"]


def tied_episodes(path: Path, n: int = 12) -> None:
    """The embedded model before the rater fix: every rating 1, so every group ties."""
    lines = FIXTURE.read_text().splitlines()
    out = []
    for i in range(n):
        record = json.loads(lines[i % 2])
        record["round"] = i
        record["draft"]["text"] += f" ({i})"
        record["revision"]["text"] += f" ({i})"
        for item in record["feedback"]:
            item["rating"], item["valid"] = 1, True
        for stage in ("draft", "revision"):
            record["observer"][stage]["alignment"] = 1
        out.append(json.dumps(record))
    path.write_text("\n".join(out) + "\n")


def test_tied_ratings_warn_on_stderr_and_in_the_card_with_exit_code_0(tmp_path, capsys):
    episodes = tmp_path / "tied.jsonl"
    tied_episodes(episodes)
    card = build(config(tmp_path, [episodes], **{"mix.ratio": None}))
    warning = card["signal_warning"]
    assert warning.startswith("sa-build-data: warning: the ratings carry little signal (100% of groups tied")
    assert "a single rating value (1)" in warning and "rater=likelihood" in warning and "\n" not in warning
    assert warning in capsys.readouterr().err.splitlines()  # one line of its own (tqdm shares stderr)
    md = (tmp_path / "data" / "data_card.md").read_text()
    assert f"**Warning:** {warning}" in md and "tie (100%)" in md
    assert json.loads((tmp_path / "data" / "data_card.json").read_text())["signal_warning"] == warning
    result = subprocess.run(
        [sys.executable, "-m", "training.build_data", f"inputs=[{episodes}]", f"hydra.run.dir={tmp_path}/cli"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sa-build-data: warning: the ratings carry little signal" in result.stderr


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
    for key, value, message in [  # found by tests/test_conf_fuzz_inputs.py: these were tracebacks
        ("mix.ratio", {"imitation": "auto"}, "mix.ratio.imitation='auto' must be a number >= 0"),
        ("mix.ratio", "5:1:1", "mix.ratio='5:1:1' must map kinds to weights"),
        ("mix.ratio", {"imitation": None}, "mix.ratio.imitation=None must be a number"),
        ("seed", "abc", "Value 'abc' of type 'str' could not be converted to Integer; full_key: seed"),
        ("realignment.min_score", "high", "Value 'high' of type 'str' could not be converted to Float"),
        ("inputs", True, "Invalid value assigned: AnyNode is not a ListConfig, list or tuple.; full_key: inputs"),
        ("mix.staged", "often", "Value 'often' is not a valid bool (type str); full_key: mix.staged"),
    ]:
        cfg = config(tmp_path, [FIXTURE])
        OmegaConf.update(cfg, key, value, merge=False)
        with pytest.raises(UserError) as caught:
            build(cfg)
        assert str(caught.value).startswith(message), str(caught.value)
    assert (out / "train.jsonl").read_text() == "keep me\n"


def test_console_script_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training.build_data", f"inputs=[{tmp_path}/nope.jsonl]", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "sa-build-data: error:" in result.stderr


def kind_groups(counts: dict[str, int]) -> list[dict]:
    return [{"kind": kind, "prompt": f"{kind} {i}", "responses": []} for kind, n in counts.items() for i in range(n)]


def test_mix_anchors_on_imitation_so_a_scarce_or_missing_kind_discards_nothing_else():
    ratio = {"imitation": 5, "self_critic": 1, "realignment": 1}
    items, plan = mix(kind_groups({"imitation": 120, "self_critic": 5000, "realignment": 1}), ratio, False, 0)
    # the scarcest kind used to set the unit: 5 / 1 / 1 kept; imitation anchors now: all 120, 120/5 = 24, the 1
    assert Counter(i["kind"] for i in items) == {"imitation": 120, "self_critic": 24, "realignment": 1}
    assert plan["anchor"] == "imitation"
    assert plan["per_kind"] == {
        "imitation": {"available": 120, "cap": None, "kept": 120, "dropped": 0},
        "self_critic": {"available": 5000, "cap": 24, "kept": 24, "dropped": 4976},
        "realignment": {"available": 1, "cap": 24, "kept": 1, "dropped": 0},
    }
    # no realignment at all: imitation and self-critic are untouched by its absence
    items, plan = mix(kind_groups({"imitation": 50, "self_critic": 7}), ratio, False, 0)
    assert Counter(i["kind"] for i in items) == {"imitation": 50, "self_critic": 7}
    # no imitation: the next kind anchors (kept whole), realignment capped relative to it
    items, plan = mix(kind_groups({"self_critic": 40, "realignment": 90}), {**ratio, "realignment": 2}, False, 0)
    assert plan["anchor"] == "self_critic" and Counter(i["kind"] for i in items) == {
        "self_critic": 40,
        "realignment": 80,
    }
    # one imitation group: each other kind keeps at least one; a zero weight drops a kind whole
    items, _ = mix(kind_groups({"imitation": 1, "self_critic": 30, "realignment": 30}), {**ratio, "realignment": 0},
                   False, 0)  # fmt: skip
    assert Counter(i["kind"] for i in items) == {"imitation": 1, "self_critic": 1}
    # the sample kept is seeded: the same seed keeps the same groups
    again, _ = mix(kind_groups({"imitation": 120, "self_critic": 5000, "realignment": 1}), ratio, False, 0)
    first, _ = mix(kind_groups({"imitation": 120, "self_critic": 5000, "realignment": 1}), ratio, False, 0)
    assert [i["prompt"] for i in again] == [i["prompt"] for i in first]


def test_data_card_reports_kept_and_dropped_per_kind_with_scarce_realignment(tmp_path):
    episodes = tmp_path / "episodes.jsonl"
    synthetic_episodes(episodes)  # 10 imitation, 30 self-critic, 30 realignment groups ...
    records = [json.loads(line) for line in episodes.read_text().splitlines()]
    for record in records[1:]:  # ... but only the first revision improves on its draft: 1 realignment group
        record["observer"]["revision"]["alignment"] = 2
    episodes.write_text("".join(json.dumps(r) + "\n" for r in records))
    card = build(config(tmp_path, [episodes]))
    assert card["groups_per_kind"] == {"imitation": 10, "self_critic": 2, "realignment": 1}  # was 5 / 1 / 1
    assert card["mix"]["anchor"] == "imitation"
    assert card["mix"]["per_kind"]["self_critic"] == {"available": 30, "cap": 2, "kept": 2, "dropped": 28}
    assert card["mix"]["per_kind"]["realignment"] == {"available": 1, "cap": 2, "kept": 1, "dropped": 0}
    md = (tmp_path / "data" / "data_card.md").read_text()
    assert "| imitation (anchor) | 10 | all | 10 | 0 |" in md and "| self_critic | 30 | 2 | 2 | 28 |" in md


def fixture_line(**changes) -> dict:
    record = json.loads(FIXTURE.read_text().splitlines()[0])
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"question": None}, "field question is null"),
        ({"question": "  "}, "field question is empty"),
        ({"draft": "a plain string"}, "field draft is a string, not an object with a text"),
        ({"revision": {"text": 7}}, "field revision.text is an integer, not a string"),
        ({"agent_persona": ["x"]}, "field agent_persona is a list, not a string"),
        ({"question": "lone \ud800 surrogate"}, "field question holds a lone surrogate"),
        ({"feedback": [{"peer_id": 1, "rating": 3, "reason": {"a": 1}, "valid": True}]},
         "field feedback[0].reason is an object, not a string"),
    ],
)  # fmt: skip
def test_an_episode_of_the_wrong_shape_is_one_line_naming_file_line_and_field(tmp_path, change, field):
    good = json.dumps(fixture_line())
    bad = json.dumps(fixture_line(round=5, **change))  # ensure_ascii: the surrogate travels as an escape
    episodes = tmp_path / "odd.jsonl"
    episodes.write_text(f"{good}\n\n{bad}\n")  # a blank line: the bad record is on line 3
    with pytest.raises(UserError) as caught:
        build(config(tmp_path, [episodes]))
    message = str(caught.value)
    assert message.startswith(f"{episodes}:3: not a usable episode record ({field}") and "\n" not in message
    assert not (tmp_path / "data").exists()  # nothing written


def test_invalid_utf8_and_question_null_through_the_console_script(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    broken = tmp_path / "latin1.jsonl"
    broken.write_bytes(("\n".join(lines[:2]) + "\n").encode() + lines[2].encode().replace(b"?", b"\xe9?", 1) + b"\n")
    null_question = tmp_path / "null.jsonl"
    null_question.write_text(json.dumps(fixture_line(question=None)) + "\n")
    for path, message in (
        (broken, f"{broken}:3: "),  # environment.records names the line; sa-build-data's fallback the column
        (null_question, f"{null_question}:1: not a usable episode record (field question is null"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "training.build_data", f"inputs=[{path}]", f"hydra.run.dir={tmp_path}/out"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"sa-build-data: error: {message}"), result.stderr
        assert path != broken or "0xe9" in result.stderr


def test_a_revision_that_echoes_the_protocol_is_dropped_from_imitation_and_realignment(tmp_path):
    """The real SmolLM2 revision below repeats the revision prompt's frame and is rated above its draft: with the
    filter on (the default) it is neither an imitation response nor a realignment sample, and the card counts both."""
    echo = json.loads(ECHOES.read_text().splitlines()[1])["text"]  # "You were asked: ... You answered: ..."
    episodes = tmp_path / "echo.jsonl"
    episodes.write_text(json.dumps(fixture_line(revision={"text": echo})) + "\n")
    card = build(config(tmp_path, [episodes]))
    rows = read_rows(tmp_path / "data")
    imitation = [r for row in rows if row["kind"] == "imitation" for r in row["responses"]]
    assert [r["source"] for r in imitation] == ["draft"] and "realignment" not in card["groups_per_kind"]
    assert (
        card["dropped"]["protocol_echoes"] == 2 and "2 protocol echoes" in (tmp_path / "data/data_card.md").read_text()
    )
    assert all("echo" not in r for row in rows for r in row["responses"])  # the marker never reaches the data
    examples = card["dropped_echo_examples"]
    assert [(e["kind"], e["echoes"]) for e in examples] == [
        ("imitation", "You were asked:"),
        ("realignment", "You were asked:"),
    ]
    assert (
        'imitation, rated 6, repeats "You were asked:": "You were asked:'
        in (tmp_path / "data/data_card.md").read_text()
    )

    kept = build(config(tmp_path / "off", [episodes], **{"filter.echo_words": 0}))
    assert kept["dropped"]["protocol_echoes"] == 0 and kept["groups_per_kind"]["realignment"] == 1
    assert kept["dropped_echo_examples"] == [] and "Dropped as" not in (tmp_path / "off/data/data_card.md").read_text()
    revisions = [
        r["text"] for row in read_rows(tmp_path / "off/data") for r in row["responses"] if r["source"] == "revision"
    ]
    assert revisions == [echo]


@pytest.mark.parametrize("words", [1, 3, -1])
def test_an_echo_run_shorter_than_four_words_is_one_line(tmp_path, words):
    episodes = tmp_path / "e.jsonl"
    episodes.write_text(json.dumps(fixture_line()) + "\n")
    with pytest.raises(
        UserError, match=rf"^filter.echo_words={words} must be 0 \(keep every answer\) or an integer >= 4"
    ):
        build(config(tmp_path, [episodes], **{"filter.echo_words": words}))
    assert not (tmp_path / "data").exists()
