"""environment.analysis: the one place per-round means and the society score are computed; metrics.json, the
progress line, the plateau stopper and sa-eval's world curves all read their figures from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.backends.usage import UsageMeter
from environment.analysis import OBSERVER_COLUMNS, Tally, by_round, observer_scores, society_score
from environment.metrics import per_round, summarize
from environment.progress import Progress
from environment.stopping import Stopper
from training.eval.world_curves import world_curves

ROOT = Path(__file__).resolve().parents[1]


def record(round_: int, agent: int, draft: tuple, revision: tuple, peers: list) -> dict:
    return {
        "schema_version": 1, "world_id": "w", "round": round_, "agent_id": agent, "position": [0, agent],
        "agent_model": "m", "question_id": "q", "question": f"q{agent}", "draft": {}, "revision": {}, "usage": {},
        "observer": {"draft": dict(zip(("alignment", "engagement"), draft, strict=True)),
                     "revision": dict(zip(("alignment", "engagement"), revision, strict=True))},
        "feedback": [{"rating": r} for r in peers],
    }  # fmt: skip


RECORDS = [
    record(0, 0, (2, None), (4, 5), [3, None, 6]),
    record(0, 1, (3, 4), (6.5, None), []),
    record(1, 0, (None, None), (5, 2), [7]),
    record(1, 1, (1, 7), (None, 3), [None]),
]


def test_tally_means_leave_invalid_values_out() -> None:
    tally = Tally(RECORDS)
    assert tally.records == 4 and tally.invalid == 5
    assert tally.mean("revision_alignment") == pytest.approx((4 + 6.5 + 5) / 3)
    assert tally.mean("peer_rating", 2) == round((3 + 6 + 7) / 3, 2)
    assert Tally().mean("draft_alignment") is None
    assert observer_scores(RECORDS[0]) == dict(zip(OBSERVER_COLUMNS, (2, None, 4, 5), strict=True))
    assert list(by_round(reversed(RECORDS))) == [0, 1]


def test_society_score_rules() -> None:
    assert society_score(RECORDS[:2]) == pytest.approx((4 + 6.5) / 2 * 5)
    assert society_score(RECORDS[:2], "mean_of_products") == 20
    assert society_score([RECORDS[1]]) is None  # no engagement at all: no product


def test_every_reader_reports_the_same_figures(tmp_path: Path) -> None:
    rows = per_round(RECORDS)
    assert rows[0] == {"draft_alignment": 2.5, "draft_engagement": 4.0, "peer_rating": 4.5, "records": 2,
                       "revision_alignment": 5.25, "revision_engagement": 5.0}  # fmt: skip
    assert "draft_alignment" in rows[1] and rows[1]["peer_rating"] == 7.0
    assert summarize(RECORDS, {})["invalid_observer_scores"] == 5
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    curves = world_curves(path)
    assert curves["invalid_scores"] == 5
    for entry in curves["rounds"]:
        assert {c: entry[c] for c in OBSERVER_COLUMNS if entry[c] is not None} == {
            c: v for c, v in rows[entry["round"]].items() if c in OBSERVER_COLUMNS
        }
    stopper = Stopper(n_agents=2, rounds=2)
    progress = Progress(len(RECORDS), 0, UsageMeter(), enabled=False)
    for item in RECORDS:
        stopper.observe(item)
        progress.update(item)
    assert stopper.scores == {r: society_score([x for x in RECORDS if x["round"] == r]) for r in (0, 1)}
    assert progress.figures()["rev"] == round(Tally(RECORDS).mean("revision_alignment"), 2)


def test_analysis_needs_only_the_standard_library() -> None:
    code = (
        "import sys, environment.analysis; heavy = {'numpy', 'torch', 'hydra', 'omegaconf'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
