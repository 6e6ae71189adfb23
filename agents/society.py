"""A mixed society: assign backend nodes to agents by rule (fractions or counts), deterministically."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from typing import Any

from conf.errors import UserError


def assign_models(mix: Sequence[Mapping[str, Any]], agent_ids: Sequence[Any], seed: int = 0) -> dict[Any, Any]:
    """`mix`: entries `{backend: <node>, fraction: f}` or `{backend: <node>, count: n}` → {agent_id: backend node}.

    Counts are taken first; fractions share the rest by largest remainder. Agents are shuffled with `seed`, so the
    assignment is reproducible and not tied to grid position.
    """
    if not mix:
        raise UserError("the society mix is empty; give at least one {backend: ..., fraction: 1.0} entry")
    n = len(agent_ids)
    counts = [0] * len(mix)
    fractions: list[tuple[int, float]] = []
    for i, entry in enumerate(mix):
        if "backend" not in entry:
            raise UserError(f"society mix entry {i} has no backend; add backend: <node>")
        if entry.get("count") is not None:
            counts[i] = int(entry["count"])
        else:
            fractions.append((i, float(entry.get("fraction", 0.0))))
    rest = n - sum(counts)
    total = sum(f for _, f in fractions)
    if rest < 0 or (fractions and total <= 0) or (not fractions and rest != 0):
        raise UserError(f"society mix does not cover {n} agents; make counts sum to {n} or give positive fractions")
    if fractions:
        exact = [(i, rest * f / total) for i, f in fractions]
        for i, x in exact:
            counts[i] = int(x)
        leftover = rest - sum(counts[i] for i, _ in exact)
        for i, _ in sorted(exact, key=lambda e: e[1] - int(e[1]), reverse=True)[:leftover]:
            counts[i] += 1
    order = list(agent_ids)
    random.Random(seed).shuffle(order)
    bounds = itertools.pairwise(itertools.accumulate(counts, initial=0))  # each entry takes order[lo:hi], its count
    return {agent: entry["backend"] for entry, (lo, hi) in zip(mix, bounds, strict=True) for agent in order[lo:hi]}
