"""Statistics for comparing trained models: intervals over training seeds and paired tests over items.

Every comparison is paired: two models answered the same items, so the per-item difference d_i = a_i − b_i carries
the comparison and item difficulty cancels. With several training seeds a model's score on item i is its mean over
seeds (the seed spread enters the table through `seed_interval`).

    mean difference       d̄ = (1/n) Σ d_i
    bootstrap interval    percentiles (α/2, 1 − α/2) of d̄ over items resampled with replacement
    sign-flip test        p = P(|d̄*| ≥ |d̄|) with d*_i = ±d_i (each sign equally likely under H0: no difference);
                          exact over all 2^n flips for n ≤ `exact_max`, else Monte Carlo, p = (1 + #extreme)/(1 + N)
    seed interval         m ± t_{1−α/2, S−1} · s/√S over S training seeds
    detectable difference δ = (z_{1−α/2} + z_{power}) · s_d/√n   (normal approximation, s_d = sd of the d_i)
    items needed          n = ⌈((z_{1−α/2} + z_{power}) · s_d / δ)²⌉   to detect a true difference δ

A claim "A > B" is *not supported* when the interval lies at or below 0 or inside (−min_effect, +min_effect) (A is
not better by a meaningful amount, however small p is), else *supported* when p < α and the interval lies above 0,
and *inconclusive at this size* otherwise. Checked against scipy.stats in tests/test_training_eval_stats.py.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive at this size"


@dataclass(frozen=True)
class PairedDifference:
    """The paired comparison of two models on the same n items."""

    n: int
    mean_a: float
    mean_b: float
    difference: float
    interval: tuple[float, float]
    p_value: float
    exact: bool
    sd: float = 0.0  # standard deviation of the per-item differences (ddof=1)


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, tuple[float, float] | None]:
    """Mean over training seeds and its Student-t interval (None for a single seed)."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None
    half = float(t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, (mean - half, mean + half)


def _in_chunks(resamples: int, chunk: int, draw: Callable[[int], np.ndarray]) -> np.ndarray:
    """`draw(k)` for k = `chunk` resamples at a time (bounded memory), concatenated: `resamples` values in all."""
    return np.concatenate([draw(min(chunk, resamples - start)) for start in range(0, resamples, chunk)])


def sign_flip_p(
    differences: np.ndarray, resamples: int = 20_000, exact_max: int = 16, seed: int = 0
) -> tuple[float, bool]:
    """Two-sided p-value of the paired sign-flip (randomisation) test of mean difference 0; (p, exact)."""
    d = np.asarray(differences, dtype=float)
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, observed)
    if not np.any(d):
        return 1.0, True
    if len(d) <= exact_max:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
        flipped = np.abs(signs @ d) / len(d)
        return float(np.mean(flipped >= observed - tolerance)), True
    rng = np.random.default_rng(seed)
    flipped = _in_chunks(resamples, 4096, lambda k: np.abs(rng.choice((1.0, -1.0), size=(k, len(d))) @ d) / len(d))
    return (1 + int(np.sum(flipped >= observed - tolerance))) / (1 + resamples), False


def bootstrap_interval(
    differences: np.ndarray, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference over items."""
    d = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(seed)
    means = _in_chunks(resamples, 2048, lambda k: d[rng.integers(0, len(d), size=(k, len(d)))].mean(axis=1))
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> PairedDifference:
    """Compare model A with model B on the same items (same order): mean difference, interval, p-value."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"paired scores need the same non-empty list of items (got {x.shape} and {y.shape})")
    d = x - y
    p, exact = sign_flip_p(d, resamples=2 * resamples, seed=seed)
    return PairedDifference(
        n=len(d), mean_a=float(x.mean()), mean_b=float(y.mean()), difference=float(d.mean()),
        interval=bootstrap_interval(d, confidence, resamples, seed), p_value=p, exact=exact,
        sd=float(d.std(ddof=1)) if len(d) > 1 else 0.0,
    )  # fmt: skip


def _z_sum(alpha: float, power: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a paired test on n items finds with this power (normal approximation)."""
    return _z_sum(alpha, power) * sd / math.sqrt(n)


def items_needed(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """How many paired items a test needs to find a true mean difference `effect` with this power."""
    if effect <= 0:
        raise ValueError(f"effect={effect} must be > 0")
    return max(2, math.ceil((_z_sum(alpha, power) * sd / effect) ** 2))


def verdict(comparison: PairedDifference, alpha: float = 0.05, min_effect: float = 0.0) -> str:
    """supported / not supported / inconclusive at this size, for the claim "A > B" (see the module docstring)."""
    low, high = comparison.interval
    if high <= 0 or (min_effect > 0 and -min_effect < low and high < min_effect):
        return NOT_SUPPORTED  # checked first: a significant difference smaller than min_effect does not count
    if comparison.p_value < alpha and low > 0:
        return SUPPORTED
    return INCONCLUSIVE
