"""agents.echoes on real outputs: SmolLM2-135M answers from cpu_small's worlds (read and marked by hand) and the
answers of the BIG-bench fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.echoes import protocol_echo

DATA = Path(__file__).parent / "data"
ANSWERS = [json.loads(line) for line in (DATA / "smollm2_answers.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "answer", ANSWERS, ids=[f"{'echo' if a['echo'] else 'answer'}-{i}" for i, a in enumerate(ANSWERS)]
)
def test_real_smollm2_answers_are_marked_as_read_by_hand(answer):
    assert bool(protocol_echo(answer["text"], 6, answer["persona"])) == answer["echo"], answer["text"][:200]


def test_the_fixtures_hold_both_kinds_and_the_traps_of_shorter_runs():
    """Among the real answers kept: 'The answer is not acceptable' (4 words of the criteria) and 'As a member of a
    society' (5 words of the system prompt): runs of 6 words keep them, runs of 4 would not."""
    assert sum(a["echo"] for a in ANSWERS) >= 10 and sum(not a["echo"] for a in ANSWERS) >= 10
    answers = [a for a in ANSWERS if not a["echo"]]
    traps = [a for a in answers if protocol_echo(a["text"], 4, a["persona"])]
    assert {t["text"][:20] for t in traps} >= {"The answer is not ac", "As a member of a soc"}


def test_no_answer_of_the_bigbench_fixtures_echoes_the_protocol():
    texts = []
    for path in sorted((DATA / "bigbench").glob("*.json")):
        for example in json.loads(path.read_text()).get("examples", []):
            texts += [example.get("input", ""), *example.get("target_scores", {})]
    assert len(texts) > 20 and [t for t in texts if protocol_echo(t, 6)] == []


def test_what_is_reported_and_the_switch():
    assert protocol_echo("You were asked: Is it fair?\nYou answered: yes", 6) == "You were asked:"
    assert protocol_echo("You are a member of a society. You answer questions in your own words.", 6) == (
        "a member of a society you"
    )
    literal = "Friendly cats purr loudly every day"  # a society group's own persona prompt
    text = "Friendly cats purr loudly every single morning"
    assert protocol_echo(text, 6, literal) is None
    assert protocol_echo(text, 5, literal) == "friendly cats purr loudly every"
    assert protocol_echo("You were asked: anything", 0) is None  # 0: the check is off
