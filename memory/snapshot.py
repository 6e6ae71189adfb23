"""A whole-world memory snapshot: every agent's store (and optionally the embedding cache) as one atomic unit.

`save_all(folder, stores, meta)` writes `folder/<version>/{world.json, agents/<id>/..., cache/...}` and then switches
`folder/CURRENT` to it, so the snapshot on disk always agrees with itself (and, if the caller saves after appending a
round's episodes, with `episodes.jsonl`). `load_all(folder)` returns `(stores, meta)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memory.atomic import current_dir, publish_dir
from memory.base import Embedder
from memory.cache import EmbeddingCache
from memory.errors import SnapshotError
from memory.store import MemoryStore
from memory.store_files import read_state, write_state

WORLD_FILE = "world.json"
FORMAT = "stable-alignment/memory-world"


def save_all(
    folder: str | Path,
    stores: dict[int, MemoryStore],
    meta: dict[str, Any] | None = None,
    cache: EmbeddingCache | None = None,
) -> Path:
    """Atomically write all stores (+ `meta`, JSON-serialisable, + optional cache); return the version folder."""
    meta = dict(meta or {})
    json.dumps(meta)  # fail before writing anything if meta is not JSON

    def write(target: Path) -> None:
        for agent_id, store in sorted(stores.items()):
            (target / "agents" / str(int(agent_id))).mkdir(parents=True)
            write_state(store.state_dict(), target / "agents" / str(int(agent_id)))
        if cache is not None:
            (target / "cache").mkdir()
            cache.write_to(target / "cache")
        world = {
            "format": FORMAT,
            "agents": sorted(int(a) for a in stores),
            "sizes": {str(a): len(s) for a, s in sorted(stores.items())},
            "cache": cache is not None,
            "meta": meta,
        }
        (target / WORLD_FILE).write_text(json.dumps(world, indent=1) + "\n", encoding="utf-8")

    return publish_dir(folder, write)


def load_all(folder: str | Path) -> tuple[dict[int, MemoryStore], dict[str, Any]]:
    """`(stores by agent id, meta)` from the live snapshot; `SnapshotError` naming the bad file otherwise."""
    version = current_dir(folder)
    world = _read_world(version / WORLD_FILE)
    stores = {}
    for agent_id in world["agents"]:
        store = MemoryStore.from_state_dict(read_state(version / "agents" / str(agent_id)))
        expected = world["sizes"].get(str(agent_id))
        if expected is not None and len(store) != expected:
            raise SnapshotError(
                version / WORLD_FILE, f"says agent {agent_id} has {expected} memories, store has {len(store)}"
            )
        stores[agent_id] = store
    return stores, world["meta"]


def load_cache(folder: str | Path, inner: Embedder) -> EmbeddingCache:
    """The embedding cache saved with `save_all(..., cache=...)`, around `inner` (empty if none was saved)."""
    version = current_dir(folder)
    world = _read_world(version / WORLD_FILE)
    cache = EmbeddingCache(inner)
    if world.get("cache"):
        cache.read_from(version / "cache")
    return cache


def _read_world(path: Path) -> dict[str, Any]:
    try:
        world = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnapshotError(path, "missing: not a world memory snapshot") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SnapshotError(path, f"invalid JSON ({error}); truncated?") from None
    if not isinstance(world, dict) or world.get("format") != FORMAT:
        raise SnapshotError(path, f"not a world memory snapshot (format is not {FORMAT!r})")
    try:
        world["agents"] = [int(a) for a in world["agents"]]
        if not isinstance(world["meta"], dict) or not isinstance(world["sizes"], dict):
            raise TypeError("meta and sizes must be objects")
    except (KeyError, TypeError, ValueError) as error:
        raise SnapshotError(path, f"missing or bad field {error}") from None
    return world
