"""The checks a type cannot express, shared by every schema: each failure is one `UserError` naming the key, worded
`<key>=<value> must be <what>`."""

from __future__ import annotations

from typing import Any

from conf.errors import require, shown


def must(ok: bool, key: str, value: Any, what: str) -> None:
    """`<key>=<value> must be <what>` unless `ok`."""
    require(ok, f"{key}={shown(value)} must be {what}")


def at_least(key: str, value: Any, low: float, kind: type = float, high: float | None = None) -> None:
    """`value` (of `kind`, int or float) within [low, high]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    bounds = f" in [{low:g}, {high:g}]" if high is not None else f" >= {low:g}"
    must(ok and value >= low and (high is None or value <= high), key, value,
         f"{'an integer' if kind is int else 'a number'}{bounds}")  # fmt: skip


def at_least_if_set(key: str, node: Any, **bounds: tuple) -> None:
    """`at_least(f"{key}.{name}", ...)` on each field of `node` named in `bounds` (name=(low, kind[, high])) that is
    set; null is no value (or no limit)."""
    for name, bound in bounds.items():
        if getattr(node, name) is not None:
            at_least(f"{key}.{name}", getattr(node, name), *bound)


def one_of(key: str, value: Any, choices: tuple[str, ...]) -> None:
    """`value` is one of `choices`."""
    must(value in choices, key, value, f"one of {', '.join(choices)}")


def positive(key: str, value: Any) -> None:
    """A limit: null (no limit) or > 0."""
    must(value is None or value > 0, key, value, "a positive number (or null for no limit)")
