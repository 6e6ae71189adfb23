"""Hydra configs shipped with the package, the command-line layer shared by every `sa-*` command (cli, entry), and
the small infrastructure every layer may import, none of it loading Hydra, torch or transformers: errors (UserError,
the writability probe), paths (the cache folder, the embedded model), devices (device and precision choice), `flatten`
(a nested config as dotted keys) and `changed` (which dotted keys differ between two runs' settings)."""

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


def changed(
    old: Mapping[str, Any], new: Mapping[str, Any], missing: Any = None, defaults: Mapping[str, Any] | None = None
) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for each key of either mapping, sorted, whose values differ; a key one of them
    lacks counts as `missing` (in `old`: its value in `defaults`, if any). sa-train's checkpoint fingerprints too."""
    pairs = ((k, old.get(k, (defaults or {}).get(k, missing)), new.get(k, missing)) for k in sorted({*old, *new}))
    return [(key, before, after) for key, before, after in pairs if before != after]
