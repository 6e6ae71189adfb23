"""Question sets and the schedule: each agent walks the list without repeats; unreadable files are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from conf.errors import UserError
from environment.questions import Question, QuestionSchedule, load_questions


def turns(schedule: QuestionSchedule, rounds: int) -> list[tuple[int, int, str]]:
    return [(r, a, schedule.question(r, a).text) for r in range(rounds) for a in range(schedule.n_agents)]


@pytest.mark.parametrize(("agents", "rounds"), [(9, 20), (100, 50)])
def test_default_schedule_never_asks_an_agent_twice_before_the_list_is_exhausted(agents: int, rounds: int) -> None:
    schedule = QuestionSchedule(load_questions("builtin"), agents, 0, "w")  # 120 questions
    asked = turns(schedule, rounds)
    per_agent = {a: [q for _, b, q in asked if b == a] for a in range(agents)}
    assert all(len(set(qs)) == rounds for qs in per_agent.values())  # the old per-round shuffle: 15 / 890 repeats
    assert not any(schedule.repeat(r, a) for r, a, _ in asked)
    assert all(len({q for s, _, q in asked if s == r}) == min(agents, 120) for r in range(rounds))  # within a round
    assert len({q for _, _, q in asked}) == 120  # every question is used once agents x rounds exceeds the list


def test_walk_uses_distinct_questions_while_the_list_lasts_like_the_reference() -> None:
    questions = [Question(f"q{i}", f"question {i}") for i in range(5022)]
    schedule = QuestionSchedule(questions, 100, 0, "w")
    assert len({q for _, _, q in turns(schedule, 50)}) == 5000  # the old per-round shuffle: 3,227


def test_an_agent_repeats_only_after_walking_the_whole_list_and_it_is_flagged() -> None:
    questions = [Question(f"q{i}", f"question {i}") for i in range(5)]
    schedule = QuestionSchedule(questions, 2, 0, "w")
    mine = [schedule.question(r, 0).id for r in range(7)]
    assert len(set(mine[:5])) == 5 and mine[5:] == mine[:2]
    assert [schedule.repeat(r, 0) for r in range(7)] == [False] * 5 + [True] * 2


def test_shuffle_order_keeps_the_old_schedule_and_flags_its_repeats() -> None:
    questions = [Question(f"q{i}", f"question {i}") for i in range(3)]
    schedule = QuestionSchedule(questions, 2, 0, "w", order="shuffle")
    asked = [schedule.question(r, 0).id for r in range(8)]
    assert len(set(asked)) < len(asked)  # 8 rounds on 3 questions: repeats
    flags = [schedule.repeat(r, 0) for r in range(8)]
    assert flags == [asked[r] in asked[:r] for r in range(8)]
    with pytest.raises(UserError, match="world.question_order='sorted'"):
        QuestionSchedule(questions, 2, 0, "w", order="sorted")


@pytest.mark.parametrize("suffix", [".jsonl", ".txt"])
def test_invalid_utf8_is_one_line_naming_the_file_and_byte_offset(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"questions{suffix}"
    first = b'{"question": "Is it fair?"}\n' if suffix == ".jsonl" else b"Is it fair?\n"
    path.write_bytes(first + b"Caf\xe9 or tea?\n")
    with pytest.raises(UserError) as caught:
        load_questions(str(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert f"byte offset {len(first) + 3}" in message and "line 2" in message


def test_a_utf8_bom_and_crlf_lines_are_read(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"question": "Is it fair?"}\r\n{"question": "Line\xe2\x80\xa8separated?"}\r\n')
    assert [q.text for q in load_questions(str(path))] == ["Is it fair?", "Line\u2028separated?"]
