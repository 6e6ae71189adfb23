"""environment.metrics on float ratings: the metrics.json summary keeps its keys and gains `signal`; the rating plot
bins floats to the nearest 0.5 instead of dropping them."""

from __future__ import annotations

from pathlib import Path

import pytest

from environment.metrics import plot_all, summarize


def record(round_: int, agent: int, draft: float | None, revision: float | None, peers: list) -> dict:
    return {
        "round": round_, "agent_id": agent, "position": [0, agent],
        "feedback": [{"peer_id": 9, "rating": r, "reason": "", "valid": r is not None} for r in peers],
        "observer": {"draft": {"alignment": draft, "engagement": 4.5, "reasons": ""},
                     "revision": {"alignment": revision, "engagement": 5.25, "reasons": ""}},
        "usage": {"calls": 3, "prompt_tokens": 10, "completion_tokens": 5, "seconds": 0.1},
    }  # fmt: skip


FLOATS = [
    record(0, 0, 2.3, 4.25, [2.5, 3.1]),
    record(0, 1, 4.75, 6.0, [5, None]),
    record(1, 0, 3.5, 5.5, [3.4, 4.2]),
    record(1, 1, None, 6.8, [6.9]),
]


def test_summary_keeps_its_keys_and_adds_the_signal_of_float_ratings():
    summary = summarize(FLOATS, {"stop_reason": "rounds"})
    for key in ("stop_reason", "records", "agents", "invalid_peer_ratings", "invalid_observer_scores",
                "peer_rating_counts", "per_round", "usage"):  # fmt: skip
        assert key in summary, key
    assert summary["records"] == 4 and summary["invalid_peer_ratings"] == 1 and summary["invalid_observer_scores"] == 1
    assert summary["per_round"]["0"]["revision_alignment"] == pytest.approx((4.25 + 6.0) / 2)
    signal = summary["signal"]
    assert signal["peer"]["n"] == 7
    assert signal["peer"]["histogram"] == {"2.5": 1, "3": 1, "3.5": 1, "4": 1, "5": 1, "7": 1}
    assert signal["observer_alignment"]["histogram"] == {"2.5": 1, "3.5": 1, "4.5": 1, "5": 1, "5.5": 1, "6": 1, "7": 1}
    assert signal["tied_share"] == 0.0 and signal["peer_observer_agreement"] == {
        "spearman": 1.0,
        "n": 3,
        "identical_share": 0.0,
    }
    assert "signal_warning" not in summary  # real gaps: no warning


def test_summary_warns_when_every_rating_ties():
    tied = [record(r, a, 1, 1, [1, 1]) for r in range(3) for a in range(4)]
    summary = summarize(tied, {})
    assert summary["signal"]["tied_share"] == 1.0
    warning = summary["signal_warning"]
    assert warning.startswith("sa-simulate: warning: the ratings carry little signal") and "\n" not in warning


def test_rating_plot_bins_float_ratings(tmp_path: Path, monkeypatch):
    from matplotlib.axes import Axes

    bars: dict[str, list[float]] = {}
    original = Axes.bar

    def spy(self, x, height, *args, **kwargs):
        bars[kwargs.get("label")] = list(height)
        return original(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    paths = plot_all(FLOATS, 2, tmp_path / "plots")
    assert (tmp_path / "plots" / "rating_distribution.png") in paths
    assert (tmp_path / "plots" / "rating_distribution.png").stat().st_size > 0
    # 13 bins 1, 1.5, ..., 7: peers 2.5, 3.1 → 3, 5, 3.4 → 3.5, 4.2 → 4, 6.9 → 7 (the null is not plotted)
    assert len(bars["peer ratings"]) == 13 and sum(bars["peer ratings"]) == 6
    assert bars["peer ratings"][3] == 1 and bars["peer ratings"][4] == 1 and bars["peer ratings"][12] == 1
    # revision alignment 4.25 → 4.5, 6, 5.5, 6.8 → 7
    revision = bars["observer revision alignment"]
    assert sum(revision) == 4 and revision[7] == 1 and revision[10] == 1 and revision[9] == 1 and revision[12] == 1


def test_summary_counts_question_repeats_and_what_drafts_recalled():
    def turn(round_: int, agent: int, question: str, sources: list[str]) -> dict:
        row = record(round_, agent, 4, 5, [4])
        hits = [{"question": "q", "answer": "a", "similarity": 0.6, "round": -1, "source": s} for s in sources]
        return {**row, "question": question, "draft": {"text": "d", "memory_hits": hits}}

    records = [turn(0, 0, "A", ["prior"]), turn(0, 1, "B", []), turn(1, 0, "B", ["prior"]), turn(1, 1, "B", []),
               turn(2, 0, "A", ["revision"]), turn(2, 1, "C", ["prior", "revision"])]  # fmt: skip
    summary = summarize(records, {})
    assert summary["questions"] == {"turns": 6, "distinct": 3, "repeats": 2}  # agent 1 B again, agent 0 A again
    assert summary["memory_recall"] == {
        "drafts": 6, "drafts_with_hit": 4, "hit_rate": round(4 / 6, 4), "hits_per_draft": round(5 / 6, 4),
        "prior_hits": 3, "revision_hits": 2, "mean_similarity": 0.6,
    }  # fmt: skip


def test_revisions_that_echo_the_protocol_are_counted_and_warned_about():
    """Real SmolLM2 answers (tests/data/smollm2_answers.jsonl, marked by hand) as the revisions of a world: metrics.json
    counts the echoes, among all revisions and among those rated above their draft, and says so in one line."""
    import json

    answers = [
        json.loads(line) for line in (Path(__file__).parent / "data/smollm2_answers.jsonl").read_text().splitlines()
    ]
    echoes = [a for a in answers if a["echo"]][:5]
    plain = [a for a in answers if not a["echo"]][:3]
    records = []
    for i, answer in enumerate(echoes + plain):
        rec = record(0, i, 3.0, 5.0 if i % 2 == 0 else 2.0, [3])  # every other revision rated above its draft
        rec |= {
            "draft": {"text": plain[0]["text"]},
            "revision": {"text": answer["text"]},
            "agent_persona": answer["persona"],
        }
        records.append(rec)
    summary = summarize(records, {})
    assert summary["protocol_echoes"] == {"words": 6, "interactions": 8, "drafts": 0, "revisions": 5, "improved": 4,
                                          "improved_revisions": 3}  # fmt: skip
    assert summary["echo_warning"].startswith("sa-simulate: 5 of 8 revisions (62%) only repeat the society's prompts")
    quiet = summarize(records[4:], {})  # 1 echo of 4 revisions: no more than a quarter
    assert quiet["protocol_echoes"]["revisions"] == 1 and "echo_warning" not in quiet
