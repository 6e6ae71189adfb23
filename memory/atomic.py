"""Crash-safe writes, the project's one copy: files via temp + fsync + rename (`atomic_write_bytes`, `write_json`);
a new folder via a staging folder + rename (`write_dir`); folders as versioned sub-folders behind an atomically
replaced pointer (`publish_dir`, `current_dir`). Needs only the standard library and `memory.errors`.

A published folder looks like `folder/CURRENT` (one line: the name of the live version) and `folder/v-<...>/`.
A crash at any moment leaves `CURRENT` naming a complete version: the new version is fully written and fsynced
before `CURRENT` is replaced (os.replace is atomic), and old versions are removed only afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memory.errors import SnapshotError

POINTER = "CURRENT"
VERSION_PREFIX = "v-"
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _folder_lock(folder: Path) -> threading.Lock:
    """One lock per published folder in this process: concurrent saves into it take turns."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(folder.resolve()), threading.Lock())


def fsync_dir(folder: Path) -> None:
    """fsync a folder's entry list (so a rename inside it is durable)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write `data` as UTF-8 JSON (indent 1, non-ASCII kept, newline-terminated)."""
    atomic_write_bytes(path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder` (so a rename that publishes it is durable)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with open(Path(root) / name, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(root))


def write_dir(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Create the folder `target` whole or not at all; return it.

    `write(staging)` fills `.<name>.partial` beside `target` (a leftover of a killed writer is removed first); the
    staging folder is then fsynced and renamed to `target`, which must not exist yet. Callers that may race for one
    target hold a lock.
    """
    target = Path(target)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write(staging)
        fsync_tree(staging)
        os.replace(staging, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def publish_dir(folder: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a new version of `folder` with `write(version_dir)`, then switch `CURRENT` to it; return the version dir.

    Saves into the same folder from several threads of this process take turns (one lock per folder), so one save
    never removes another's staging folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(folder):
        name = f"{VERSION_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"
        version = write_dir(folder / name, write)
        atomic_write_bytes(folder / POINTER, (name + "\n").encode())
        for old in folder.iterdir():  # only after the pointer names the new version
            if old.name != name and (old.name.startswith(VERSION_PREFIX) or old.name.endswith(".partial")):
                shutil.rmtree(old, ignore_errors=True)
        return version


def current_dir(folder: str | Path) -> Path:
    """The live version of a published folder; `SnapshotError` naming the file if there is none."""
    folder = Path(folder)
    pointer = folder / POINTER
    if not folder.is_dir():
        raise SnapshotError(folder, "no such snapshot folder")
    if not pointer.is_file():
        raise SnapshotError(pointer, "missing: the folder holds no complete snapshot (was it ever saved?)")
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    if not name.startswith(VERSION_PREFIX) or "/" in name or "\\" in name:
        raise SnapshotError(pointer, f"does not name a snapshot version (found {name[:40]!r})")
    version = folder / name
    if not version.is_dir():
        raise SnapshotError(pointer, f"names version {name} which does not exist")
    return version
