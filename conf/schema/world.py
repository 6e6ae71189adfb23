"""Schemas of world configs (placeholder: filled by the typed-config work)."""

from __future__ import annotations

from typing import Any


def register(store: Any) -> None:
    """Store this module's schemas in Hydra's ConfigStore."""
