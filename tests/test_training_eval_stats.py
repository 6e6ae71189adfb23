"""The experiment's statistics against scipy.stats: seed intervals, the paired sign-flip test (exact and Monte
Carlo), the paired bootstrap interval; verdicts on a fixture with a known difference and on identical models."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sp

from training.eval.stats import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    bootstrap_interval,
    detectable_difference,
    items_needed,
    paired_difference,
    seed_interval,
    sign_flip_p,
    verdict,
)


def test_seed_interval_is_scipys_t_interval():
    values = [0.61, 0.58, 0.66, 0.60]
    mean, (low, high) = seed_interval(values)
    expected = sp.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sp.sem(values))
    assert mean == pytest.approx(np.mean(values)) and (low, high) == pytest.approx(expected)
    assert seed_interval([0.5]) == (0.5, None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_sign_flip_p_is_scipys_exact_paired_permutation_test(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.6, 0.2, 12), rng.normal(0.5, 0.2, 12)
    p, exact = sign_flip_p(a - b)
    reference = sp.permutation_test(
        (a, b), lambda x, y: np.mean(x - y), permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    assert exact and p == pytest.approx(reference.pvalue, abs=1e-9)


def test_monte_carlo_sign_flip_p_agrees_with_scipy_and_with_the_t_test_on_many_items():
    rng = np.random.default_rng(7)
    a = rng.binomial(1, 0.62, 300).astype(float)
    b = rng.binomial(1, 0.55, 300).astype(float)
    p, exact = sign_flip_p(a - b, resamples=20_000)
    reference = sp.permutation_test(
        (a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples", n_resamples=20_000,
        vectorized=True, random_state=1,
    )  # fmt: skip
    assert not exact and p == pytest.approx(reference.pvalue, abs=0.01)
    assert p == pytest.approx(sp.ttest_rel(a, b).pvalue, abs=0.02)  # large n: the randomisation and t tests agree


def test_bootstrap_interval_matches_scipys_percentile_bootstrap():
    rng = np.random.default_rng(3)
    d = rng.normal(0.05, 0.3, 150)
    low, high = bootstrap_interval(d, resamples=20_000)
    reference = sp.bootstrap((d,), np.mean, method="percentile", n_resamples=20_000, random_state=2)
    ci = reference.confidence_interval
    assert low == pytest.approx(ci.low, abs=0.006) and high == pytest.approx(ci.high, abs=0.006)
    assert low < d.mean() < high


def test_a_known_difference_is_found_and_identical_models_are_not_different():
    rng = np.random.default_rng(11)
    base = rng.binomial(1, 0.5, 221).astype(float)  # HHH-sized: 221 items
    better = base.copy()
    flip = np.flatnonzero(base == 0)[:40]  # 40 more items right, none lost: +0.18
    better[flip] = 1.0
    found = paired_difference(better, base)
    assert found.difference == pytest.approx(40 / 221) and found.p_value < 0.001 and found.interval[0] > 0.1
    assert verdict(found) == SUPPORTED and verdict(paired_difference(base, better)) == NOT_SUPPORTED
    same = paired_difference(base, base)
    assert same.difference == 0 and same.p_value == 1.0 and same.interval == (0.0, 0.0)
    assert verdict(same) == NOT_SUPPORTED


def test_a_small_noisy_difference_is_inconclusive_unless_the_interval_rules_out_a_meaningful_effect():
    rng = np.random.default_rng(5)
    base = rng.binomial(1, 0.5, 60).astype(float)
    noisy = base.copy()
    noisy[rng.choice(60, 6, replace=False)] = rng.binomial(1, 0.55, 6)
    small = paired_difference(noisy, base)
    assert small.p_value > 0.05 and verdict(small) == INCONCLUSIVE
    wide = paired_difference(rng.normal(0, 1, 40), rng.normal(0, 1, 40))
    assert verdict(wide, min_effect=0.01) == INCONCLUSIVE  # an interval far wider than 0.01 decides nothing
    tight = paired_difference(np.full(500, 0.5) + rng.normal(0, 0.001, 500), np.full(500, 0.5))
    assert verdict(tight, min_effect=0.02) == NOT_SUPPORTED  # no difference of 0.02 or more
    # cpu_small's SA > SFT on TruthfulQA MC2: +0.001 on 80 items, p ~ 1e-4: significant, but below min_effect
    shifted = rng.uniform(0.2, 0.6, 80)
    tiny = paired_difference(shifted + rng.uniform(0.0005, 0.0015, 80), shifted)
    assert tiny.p_value < 0.05 and tiny.interval[0] > 0
    assert verdict(tiny, min_effect=0.02) == NOT_SUPPORTED and verdict(tiny, min_effect=0.0) == SUPPORTED


def test_paired_difference_refuses_unpaired_inputs():
    with pytest.raises(ValueError, match="same non-empty list of items"):
        paired_difference([0.1, 0.2], [0.1])


def test_items_needed_gives_the_asked_power_in_simulated_paired_t_tests():
    """At n = items_needed(sd, δ) a paired test (scipy's t-test) finds a true difference δ in ~80 % of worlds."""
    sd, effect = 0.3, 0.1
    n = items_needed(sd, effect)
    assert n == 71 and detectable_difference(sd, n) <= effect < detectable_difference(sd, n - 1)
    rng = np.random.default_rng(0)
    found = [sp.ttest_1samp(rng.normal(effect, sd, n), 0.0).pvalue < 0.05 for _ in range(3000)]
    assert abs(np.mean(found) - 0.8) < 0.03
    small = [sp.ttest_1samp(rng.normal(effect, sd, n // 4), 0.0).pvalue < 0.05 for _ in range(3000)]
    assert np.mean(small) < 0.45  # a quarter of the items: far from the asked power
    assert paired_difference([1.0, 0.0, 1.0], [0.0, 0.0, 0.0]).sd == pytest.approx(np.std([1, 0, 1], ddof=1))
