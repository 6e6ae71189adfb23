"""The shipped prior set, the HH-RLHF-style loader, population labels and per-agent seeding."""

from __future__ import annotations

import json

import pytest

from memory.errors import PriorFileError
from memory.priors import load_priors, parse_hh_pair, population_labels, seed, shipped_path


def test_shipped_set_is_well_formed():
    items = load_priors()
    assert 60 <= len(items) <= 100
    assert len({it.question for it in items}) == len(items)
    assert all(it.good != it.bad and it.question.endswith("?") for it in items)
    lines = shipped_path().read_text(encoding="utf-8").splitlines()
    assert len({json.loads(line)["topic"] for line in lines}) >= 10


def test_population_labels_follow_the_reference():
    assert population_labels("all_good", 4) == ["good"] * 4
    assert population_labels("all_bad", 4) == ["bad"] * 4
    # half_half on a 3x3 grid: cells with row <= col are good until half (4) are
    assert population_labels("half_half", 9) == ["good", "good", "good", "bad", "good", "bad", "bad", "bad", "bad"]
    mixed = population_labels("mixed_half_half", 100, seed=3)
    assert mixed.count("good") == 50 and mixed != population_labels("mixed_half_half", 100, seed=4)
    assert mixed == population_labels("mixed_half_half", 100, seed=3)
    with pytest.raises(ValueError, match="population"):
        population_labels("most_good", 4)


def test_seed_gives_each_agent_distinct_questions_answered_by_its_label():
    items = load_priors()
    good = {it.question: it.good for it in items}
    bad = {it.question: it.bad for it in items}
    per_agent = seed("mixed_half_half", 9, per_agent=50, seed=1)
    assert len(per_agent) == 9
    labels = population_labels("mixed_half_half", 9, seed=1)
    for agent, priors in enumerate(per_agent):
        assert len(priors) == 50 and len({q for q, _a, _l in priors}) == 50
        for question, answer, label in priors:
            assert label == labels[agent]
            assert answer == (good if label == "good" else bad)[question]
    assert per_agent == seed("mixed_half_half", 9, per_agent=50, seed=1)
    assert per_agent != seed("mixed_half_half", 9, per_agent=50, seed=2)
    assert len(seed("all_good", 2, per_agent=500)[0]) == len(items)  # capped at the set's size


def test_hh_rlhf_style_file(tmp_path):
    path = tmp_path / "hh.jsonl"
    rows = [
        {
            "chosen": "\n\nHuman: Should I cheat on my taxes?\n\nAssistant: No, it is illegal.\n\nPlus risky.",
            "rejected": "\n\nHuman: Should I cheat on my taxes?\n\nAssistant: Sure, hide cash income.",
        },
        {  # same first reply: no contrast, skipped
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Rob a bank?\n\nAssistant: No.",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Rob a bank?\n\nAssistant: Yes.",
        },
        {"question": "Own format?", "good": "Good answer.", "bad": "Bad answer."},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    items = load_priors(path)
    assert [(it.question, it.good, it.bad) for it in items] == [
        ("Should I cheat on my taxes?", "No, it is illegal.\n\nPlus risky.", "Sure, hide cash income."),
        ("Own format?", "Good answer.", "Bad answer."),
    ]
    assert parse_hh_pair("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q\n\nAssistant: b").bad == "b"


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ('{"question": "q", "good": "g"}\n', ":1"),
        ('{"question": "q", "good": "g", "bad": "b"}\n{"chosen": "no turns", "rejected": "x"}\n', ":2"),
        ("{not json\n", ":1"),
        ("", ""),
    ],
)
def test_bad_prior_files_give_one_line_errors(tmp_path, content, where):
    path = tmp_path / "p.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PriorFileError) as info:
        load_priors(path)
    assert f"{path}{where}" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(PriorFileError, match="no such prior file"):
        load_priors(tmp_path / "missing.jsonl")
