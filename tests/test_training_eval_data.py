"""BIG-bench task loading on small fixture tasks: HHH dialogues as chat turns, HHH-Adversarial prefixes, TruthfulQA
MC1/MC2 with its primer, moral_permissibility, chance levels, and one-line errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conf.errors import UserError
from training.eval import bigbench
from training.eval import tasks as mc

FIXTURES = Path(__file__).parent / "data" / "bigbench"


def test_hhh_dialogue_becomes_chat_turns() -> None:
    text = "My friend is annoying.\n\nAssistant:  What happened?\n\nHuman:  She calls me.\n\nHuman: Often."
    assert bigbench.dialogue_turns(text) == [
        ("user", "My friend is annoying."),
        ("assistant", "What happened?"),
        ("user", "She calls me.\n\nOften."),
    ]
    assert bigbench.dialogue_turns("Just a question?") == [("user", "Just a question?")]


def test_hhh_questions_per_category() -> None:
    questions = mc.hhh_questions(FIXTURES)
    assert [q.category for q in questions].count("harmless") == 3 and len(questions) == 9
    multi = questions[2]
    assert [role for role, _ in multi.conv] == ["user", "assistant", "user"]
    assert all(len(q.choices) == 2 and sorted(q.targets) == [0.0, 1.0] for q in questions)
    assert all(mc.chance(q) == 0.5 for q in questions)


def test_adversarial_items_carry_a_misaligned_exchange_first() -> None:
    exchanges = mc.load_exchanges()
    assert len(exchanges) >= 8
    clean = mc.hhh_questions(FIXTURES)
    adversarial = mc.hhh_adversarial_questions(FIXTURES, exchanges)
    for k, (a, c) in enumerate(zip(adversarial, clean, strict=True)):
        assert a.conv[:2] == exchanges[k % len(exchanges)]
        assert a.conv[2:] == c.conv and a.choices == c.choices and a.targets == c.targets
        assert a.conv[0][0] == "user" and a.conv[1][0] == "assistant"


def test_truthful_qa_mc1_mc2_and_primer() -> None:
    questions = mc.truthful_qa_questions(FIXTURES)
    mc1 = [q for q in questions if q.task == "truthful_qa_mc1"]
    mc2 = [q for q in questions if q.task == "truthful_qa_mc2"]
    assert len(mc1) == len(mc2) == 3
    assert mc1[0].conv[:4] == (
        ("user", "What is the capital of France?"),
        ("assistant", "The capital of France is Paris."),
        ("user", "What is the square root of banana?"),
        ("assistant", "I have no comment."),
    )
    assert mc2[0].metric == "mass" and mc2[0].targets == (1.0, 1.0, 0.0, 0.0)
    assert mc.chance(mc2[0]) == 0.5 and mc.chance(mc1[2]) == 0.25
    no_primer = mc.truthful_qa_questions(FIXTURES, primer=False)
    assert len(no_primer[0].conv) == 1


def test_moral_permissibility_yes_no() -> None:
    questions = mc.moral_questions(FIXTURES)
    assert [q.targets for q in questions] == [(1.0, 0.0), (0.0, 1.0), (0.0, 1.0)]
    assert questions[1].choices == ("Yes", "No")


def test_subsample_is_seeded_and_ordered() -> None:
    items = bigbench.hhh_items(FIXTURES)
    a, b = bigbench.subsample(items, 4, seed=1), bigbench.subsample(items, 4, seed=1)
    assert a == b and len(a) == 4
    assert [items.index(x) for x in a] == sorted(items.index(x) for x in a)
    with pytest.raises(UserError):
        bigbench.subsample(items, 0)


def test_corrupt_or_missing_tasks_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "hhh_harmless.json"
    bad.write_text(json.dumps({"examples": [{"input": "x", "target_scores": {"only one": 1}}]}))
    with pytest.raises(UserError, match="at least two choices"):
        bigbench.mc_items(bad, "harmless")
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not a readable BIG-bench task JSON"):
        bigbench.mc_items(bad, "harmless")
    bad.write_text((FIXTURES / "hhh_harmless.json").read_text())
    with pytest.raises(UserError, match="has no hhh_helpful.json"):
        bigbench.hhh_items(tmp_path)
    with pytest.raises(UserError, match="is not a folder"):
        bigbench.bigbench_folder(str(tmp_path / "nowhere"))
    (tmp_path / "adv.jsonl").write_text('{"user": "x"}\n')
    with pytest.raises(UserError, match="user and assistant"):
        mc.load_exchanges(tmp_path / "adv.jsonl")


def test_cached_tasks_are_used_without_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in bigbench.TASK_FILES.values():
        (tmp_path / name).write_text((FIXTURES / name).read_text())
    monkeypatch.setattr(bigbench.subprocess, "run", lambda *a, **k: pytest.fail("no download when cached"))
    assert bigbench.fetch_bigbench(tmp_path) == tmp_path
