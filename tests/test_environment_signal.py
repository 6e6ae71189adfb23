"""environment.signal: histogram, entropy, ties, gaps and Spearman by hand; the noise warning on tied vs gapped data."""

from __future__ import annotations

import math

import pytest

from environment.signal import (
    entropy,
    episode_signal,
    group_signal,
    histogram,
    mean_gap,
    noise_warning,
    spearman,
    tied_share,
)


def record(draft: float | None, revision: float | None, peers: list, engagement: float | None = 4) -> dict:
    """A minimal episode record: what the signal reads (ratings), nothing else."""
    return {
        "feedback": [{"peer_id": i, "rating": r, "reason": "", "valid": r is not None} for i, r in enumerate(peers)],
        "observer": {
            "draft": {"alignment": draft, "engagement": engagement, "reasons": ""},
            "revision": {"alignment": revision, "engagement": engagement, "reasons": ""},
        },
    }


def test_histogram_bins_floats_to_the_nearest_half():
    values = [1, 1.2, 1.3, 3, 4.25, 4.3, 6.74, 6.76, 7, None, 8, float("nan"), True]
    # 1.2 → 1, 1.3 → 1.5, 4.25 → 4.5 (halves round up), 6.74 → 6.5, 6.76 → 7; null, 8, NaN and a bool are no ratings
    assert histogram(values) == {"1": 2, "1.5": 1, "3": 1, "4.5": 2, "6.5": 1, "7": 2}
    assert list(histogram([7, 2.5, 1])) == ["1", "2.5", "7"]  # scale order
    assert histogram([]) == {}


def test_entropy_in_bits():
    assert entropy([]) == 0.0
    assert entropy([3, 3, 3.1]) == 0.0  # one bin
    assert entropy([1, 1, 2, 2]) == pytest.approx(1.0)
    assert entropy([1, 2, 3, 4]) == pytest.approx(2.0)
    assert entropy([1, 1, 1, 7]) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_tied_share_and_mean_gap():
    groups = [[3, 3], [4.25, 4.25, 4.25], [2, 5], [7], [None, 6]]
    assert tied_share(groups) == pytest.approx(2 / 3)  # [7] and [None, 6] hold < 2 valid ratings
    assert tied_share([[1], [None, None]]) is None
    # best − mean(others): 7 − 4, 4 − 4, 6 − 2
    assert mean_gap([[7, 3, 5], [4, 4], [6, 2]]) == pytest.approx(7 / 3)
    assert mean_gap([[4.25, 4.25, 2.5]]) == pytest.approx(4.25 - (4.25 + 2.5) / 2)
    assert mean_gap([[5]]) is None


def test_spearman_against_hand_computed_values():
    # ranks x = 1..5; y = [5, 6, 7, 8, 7] → [1, 2, 3.5, 5, 3.5]; deviations from 3: cov 8, var_x 10, var_y 9.5
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1.5, 2.25, 9], [0.1, 0.2, 0.3]) == pytest.approx(1.0)  # ranks, not values
    assert spearman([1, 2, None, 3, 4], [2, 1, 5, 4, 3]) == pytest.approx(0.6)  # the pair with a None is dropped
    assert spearman([1, 2], [1, 2]) is None  # fewer than 3 pairs
    assert spearman([1, 2, 3], [4, 4, 4]) is None  # a constant side
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_episode_signal_per_role_and_agreement():
    records = [record(2, 5, [2, 3]), record(4.5, 6, [5, None]), record(6, 6, [6, 7]), record(None, 3, [])]
    signal = episode_signal(records)
    assert signal["records"] == 4
    peer = signal["peer"]
    assert peer["n"] == 6 and peer["valid_share"] == pytest.approx(5 / 6, abs=1e-4)
    assert peer["histogram"] == {"2": 1, "3": 1, "5": 1, "6": 1, "7": 1} and peer["mean"] == pytest.approx(23 / 5)
    alignment = signal["observer_alignment"]
    assert alignment["n"] == 8 and alignment["valid_share"] == 0.875
    assert alignment["mean"] == pytest.approx(32.5 / 7, abs=1e-4)
    assert signal["observer_engagement"]["histogram"] == {"4": 8}
    # interactions {draft, revision}: [2, 5], [4.5, 6], [6, 6] (tied); [None, 3] holds one rating
    assert signal["n_multi"] == 3 and signal["tied_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert signal["mean_gap"] == pytest.approx((3 + 1.5 + 0) / 3, abs=1e-4)
    # peer mean per draft [2.5, 5, 6.5] vs observer draft [2, 4.5, 6]: same order
    # no draft where every peer gave the observer's exact number
    assert signal["peer_observer_agreement"] == {"spearman": 1.0, "n": 3, "identical_share": 0.0}
    same = episode_signal([record(3, 5, [3, 3]), record(4.5, 6, [4.5]), record(6, 6, [6, 7])])
    assert same["peer_observer_agreement"]["identical_share"] == pytest.approx(2 / 3, abs=1e-4)


def tied_records(n: int = 20) -> list[dict]:
    """The embedded model before the fix: every rating 1."""
    return [record(1, 1, [1, 1, 1], engagement=1) for _ in range(n)]


def gapped_records(n: int = 20) -> list[dict]:
    """Drafts spread over the scale, revisions better, peers agreeing with the observer."""
    out = []
    for i in range(n):
        draft = 1 + (i % 5)
        out.append(record(draft, min(7, draft + 1.5), [draft, draft + 0.5, None if i % 7 == 0 else draft]))
    return out


def test_noise_warning_fires_on_tied_data_and_says_what_to_change():
    warning = noise_warning(episode_signal(tied_records()), "sa-simulate")
    assert warning is not None and "\n" not in warning
    assert warning.startswith("sa-simulate: warning: the ratings carry little signal (")
    assert "100% of interactions score draft and revision alike" in warning
    assert "a single peer and observer alignment rating value (1)" in warning and "rater=likelihood" in warning
    groups = group_signal([[4, 4, 4], [2, 2], [5, 5, 3], [6]])
    assert groups["n_groups"] == 4 and groups["n_multi"] == 3 and groups["tied_share"] == pytest.approx(0.6667)
    assert "67% of groups tied" in noise_warning(groups, "sa-train")
    assert "a single rating value (4.5)" in noise_warning(group_signal([[4.25, 4.3], [4.4, 4.6]]), "sa-train")


def test_noise_warning_is_silent_on_data_with_real_gaps():
    signal = episode_signal(gapped_records())
    assert signal["peer_observer_agreement"]["spearman"] > 0.9 and signal["tied_share"] == 0.0
    assert noise_warning(signal, "sa-build-data") is None
    groups = group_signal([[7, 3, 5], [4.25, 4.25, 2.5], [6, 2], [5]])
    assert groups["tied_share"] == 0.0 and groups["mean_gap"] == pytest.approx((3 + 0.875 + 4) / 3, abs=1e-4)
    assert noise_warning(groups, "sa-train") is None
    assert noise_warning({"groups": groups, "episodes": signal}, "sa-build-data") is None


def test_noise_warning_on_uncorrelated_raters_and_mostly_invalid_ratings():
    # observer draft alternates 2, 6; the peer mean goes 2, 2, 6, 6: ρ = 0 over 12 drafts
    records = [record(2 + 4 * (i % 2), 7, [2 + 4 * ((i // 2) % 2)]) for i in range(12)]
    signal = episode_signal(records)
    assert signal["peer_observer_agreement"] == {"spearman": 0.0, "n": 12, "identical_share": 0.5}
    assert "peer-observer agreement 0.00 over 12 drafts" in noise_warning(signal, "sa-build-data")
    assert noise_warning(episode_signal(records[:9]), "x") is None  # fewer than 10 drafts: too few to judge
    invalid = [record(2 + i % 5, 7, [None, None, 3 + i % 3]) for i in range(6)]
    assert "only 33% of peer ratings valid" in noise_warning(episode_signal(invalid), "sa-build-data")
    # nested (a data card's) signal: findings of both parts, each once
    both = {"groups": group_signal([[3, 3], [3, 3]]), "episodes": episode_signal(tied_records())}
    line = noise_warning(both, "sa-build-data")
    assert line.count("100% of groups tied") == 1 and "100% of interactions" in line
