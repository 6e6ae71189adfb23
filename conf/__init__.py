"""Hydra configs shipped with the package, the command-line layer shared by every `sa-*` command (cli, entry), and
the small infrastructure every layer may import, none of it loading Hydra, torch or transformers: errors (UserError),
paths (the cache folder, the embedded model), devices (device and precision choice) and `flatten` (a nested config as
dotted keys)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings → dotted keys (lists and empty mappings are values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
