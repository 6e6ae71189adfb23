"""Does this rating data carry signal? Numbers that say when ratings are noise the loss cannot learn from.

Pure standard library, like `environment.records`: `sa-simulate` (metrics.json), `sa-build-data` (data card) and
`sa-train` all read it. A rating is a real number in [1, 7] or null; nulls and other invalid values are skipped by
every statistic here and counted only in `valid_share`.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from environment.records import RATING_MAX, RATING_MIN, valid_rating

BIN = 0.5  # histogram resolution on the 1..7 scale
BINS = [RATING_MIN + BIN * i for i in range(int((RATING_MAX - RATING_MIN) / BIN) + 1)]  # 1, 1.5, ..., 7
# noise_warning thresholds
MAX_TIED_SHARE = 0.5
MIN_AGREEMENT, MIN_AGREEMENT_N = 0.1, 10
MIN_VALID_SHARE = 0.5
ADVICE = (
    "the loss has no rating gaps to learn from — use a rater with signal (rater=likelihood for small models) "
    "and check it with sa-eval tasks=[rater]"
)


def _valid(values: Iterable[Any]) -> list[float]:
    return [v for v in (valid_rating(x) for x in values) if v is not None]


def bin_key(value: float) -> str:
    """The histogram key of one rating: the nearest multiple of 0.5 (halves round up), "3" or "3.5"."""
    binned = min(RATING_MAX, max(RATING_MIN, math.floor(value / BIN + 0.5) * BIN))
    return str(int(binned)) if binned == int(binned) else str(binned)


def histogram(values: Iterable[Any]) -> dict[str, int]:
    """Valid ratings binned to the nearest 0.5 on the 1..7 scale, e.g. {"1": 3, "4.5": 2}; keys in scale order."""
    counts = Counter(bin_key(v) for v in _valid(values))
    return {key: counts[key] for key in sorted(counts, key=float)}


def entropy(values: Iterable[Any]) -> float:
    """Shannon entropy in bits of the rating histogram (0.0 for no values or a single bin; log2(13) at most)."""
    counts = list(histogram(values).values())
    total = sum(counts)
    if len(counts) < 2:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in counts)


def _multi(groups: Iterable[Iterable[Any]]) -> list[list[float]]:
    """The groups that hold at least two valid ratings (the only ones that can carry a preference)."""
    return [g for g in (_valid(group) for group in groups) if len(g) >= 2]


def tied_share(groups: Iterable[Iterable[Any]]) -> float | None:
    """Share of the groups with ≥ 2 valid ratings whose ratings are all equal; None when there is no such group."""
    multi = _multi(groups)
    return sum(len(set(g)) == 1 for g in multi) / len(multi) if multi else None


def mean_gap(groups: Iterable[Iterable[Any]]) -> float | None:
    """Mean over the groups with ≥ 2 valid ratings of (best − mean of the others); None when there is no such group."""
    gaps = []
    for group in _multi(groups):
        best = max(group)
        group.remove(best)  # the others (`_multi` gives fresh lists)
        gaps.append(best - sum(group) / len(group))
    return sum(gaps) / len(gaps) if gaps else None


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the average of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0  # a run of ties holds sorted positions start .. start + len(tied) - 1 (ranks one higher)
    for _, group in itertools.groupby(order, key=values.__getitem__):
        tied = list(group)
        for index in tied:
            ranks[index] = start + (len(tied) + 1) / 2
        start += len(tied)
    return ranks


def spearman(xs: Sequence[float | None], ys: Sequence[float | None]) -> float | None:
    """Spearman's rank correlation (Pearson on average ranks); pairs with a None are dropped.

    None when fewer than 3 pairs remain or one side is constant (the correlation is undefined).
    """
    if len(xs) != len(ys):
        raise ValueError(f"spearman needs two sequences of one length, got {len(xs)} and {len(ys)}")
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
    if len(pairs) < 3:
        return None
    rx, ry = _ranks([p[0] for p in pairs]), _ranks([p[1] for p in pairs])
    mean = (len(pairs) + 1) / 2  # the mean of average ranks is always (n + 1) / 2
    cov = sum((a - mean) * (b - mean) for a, b in zip(rx, ry, strict=True))
    vx, vy = sum((a - mean) ** 2 for a in rx), sum((b - mean) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)


def rounded(value: float | None, digits: int = 4) -> float | None:
    """`value` rounded to `digits` places; None stays None."""
    return None if value is None else round(value, digits)


def role_stats(values: list[Any]) -> dict[str, Any]:
    """{n, valid_share, histogram, entropy, mean} of one rater role; n counts invalid (null) ratings too."""
    valid = _valid(values)
    return {
        "n": len(values),
        "valid_share": rounded(len(valid) / len(values)) if values else None,
        "histogram": histogram(valid),
        "entropy": rounded(entropy(valid)),
        "mean": rounded(sum(valid) / len(valid)) if valid else None,
    }


def observer_score(record: dict[str, Any], stage: str, key: str) -> Any:
    """The observer's `key` score of the `stage` text as stored (None when absent)."""
    return ((record.get("observer") or {}).get(stage) or {}).get(key)


def feedback_ratings(record: dict[str, Any]) -> list[Any]:
    """Every feedback rating of one record; one the agent marked invalid counts as null."""
    return [item.get("rating") if item.get("valid") is not False else None for item in record.get("feedback") or []]


def unreadable_count(record: dict[str, Any]) -> int:
    """Unreadable peer ratings (null or marked invalid) plus unreadable observer alignment scores of one turn:
    sa-browse's flagged turns and sa-build-data's count of invalid ratings."""
    scores = (observer_score(record, stage, "alignment") for stage in ("draft", "revision"))
    return [valid_rating(value) for value in (*feedback_ratings(record), *scores)].count(None)


def episode_signal(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per role (peer, observer_alignment, observer_engagement) {n, valid_share, histogram, entropy, mean}; tied_share
    and mean_gap over each interaction's {draft, revision} observer alignment; `peer_observer_agreement`: Spearman
    between the mean valid peer rating of each draft and the observer's draft alignment, with its n and the share of
    drafts where every peer gave the observer's exact number (1.0: one rater, not independent judgments)."""
    peer_by_draft = [_valid(feedback_ratings(r)) for r in records]
    roles = {
        "peer": [v for r in records for v in feedback_ratings(r)],
        "observer_alignment": [observer_score(r, s, "alignment") for r in records for s in ("draft", "revision")],
        "observer_engagement": [observer_score(r, s, "engagement") for r in records for s in ("draft", "revision")],
    }
    interactions = [[observer_score(r, s, "alignment") for s in ("draft", "revision")] for r in records]
    peer_means = [sum(p) / len(p) if p else None for p in peer_by_draft]
    observer = [valid_rating(observer_score(r, "draft", "alignment")) for r in records]
    rated = [(p, o) for p, o in zip(peer_by_draft, observer, strict=True) if p and o is not None]  # the pairs of ρ
    same = sum(all(v == o for v in p) for p, o in rated)  # every peer gave the observer's exact number
    return {
        "records": len(records),
        **{role: role_stats(values) for role, values in roles.items()},
        "tied_share": rounded(tied_share(interactions)),
        "mean_gap": rounded(mean_gap(interactions)),
        "n_multi": len(_multi(interactions)),
        "peer_observer_agreement": {
            "spearman": rounded(spearman(peer_means, observer)),
            "n": len(rated),
            "identical_share": rounded(same / len(rated)) if rated else None,
        },
    }


def group_signal(groups_of_ratings: Iterable[Iterable[Any]]) -> dict[str, Any]:
    """Signal of training groups: tied_share, mean_gap, histogram, entropy over all ratings, n_groups, n_multi."""
    groups = [list(group) for group in groups_of_ratings]
    stats = role_stats([v for group in groups for v in group])
    return {
        "n_groups": len(groups),
        "n_multi": len(_multi(groups)),
        "tied_share": rounded(tied_share(groups)),
        "mean_gap": rounded(mean_gap(groups)),
        **{key: stats[key] for key in ("histogram", "entropy", "valid_share")},
    }


def findings(signal: dict[str, Any]) -> list[str]:
    """What makes these ratings unable to drive the loss (empty when the data has real gaps).

    Reads an `episode_signal`, a `group_signal`, or a dict holding them under `episodes` / `groups`: most
    multi-response groups tied, peer and observer uncorrelated (|ρ| < 0.1 over ≥ 10 drafts), fewer than half the
    ratings valid, or a single rating value (entropy 0) where the loss takes its ratings from.
    """
    nested = [signal[key] for key in ("groups", "episodes") if isinstance(signal.get(key), dict)]
    if nested:
        found = []
        for part in nested:  # a single value in the training groups says it already: no per-role repeat
            single = any(item.startswith("a single") for item in found)
            found += [item for item in findings(part) if not (single and item.startswith("a single"))]
        return list(dict.fromkeys(found))
    found = []
    episodes = "records" in signal
    tied = signal.get("tied_share")
    if tied is not None and tied > MAX_TIED_SHARE:
        what = "interactions score draft and revision alike" if episodes else "groups tied"
        found.append(f"{tied:.0%} of {what}")
    agreement = signal.get("peer_observer_agreement") or {}
    rho, n = agreement.get("spearman"), agreement.get("n", 0)
    if rho is not None and n >= MIN_AGREEMENT_N and abs(rho) < MIN_AGREEMENT:
        found.append(f"peer-observer agreement {rho:.2f} over {n} drafts")
    # the loss reads peer ratings and observer alignment (engagement is reported, not trained on)
    roles = (
        {"peer": signal.get("peer"), "observer alignment": signal.get("observer_alignment")}
        if episodes
        else {"": signal}
    )
    single: dict[str, list[str]] = {}  # value → the roles that use only it
    for role, stats in roles.items():
        if not isinstance(stats, dict):
            continue
        share = stats.get("valid_share")
        if share is not None and share < MIN_VALID_SHARE:
            found.append(f"only {share:.0%} of {role + ' ' if role else ''}ratings valid")
        bins = stats.get("histogram") or {}
        if len(bins) == 1 and sum(bins.values()) >= 2:
            single.setdefault(next(iter(bins)), []).append(role)
    for value, names in single.items():
        found.append(f"a single {' and '.join(names) + ' ' if names != [''] else ''}rating value ({value})")
    return found


def noise_warning(signal: dict[str, Any], prog: str) -> str | None:
    """One line for stderr when the ratings cannot drive the loss (what was found, what to change); else None."""
    found = findings(signal)
    if not found:
        return None
    return f"{prog}: warning: the ratings carry little signal ({', '.join(found)}); {ADVICE}"
