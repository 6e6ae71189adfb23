"""Hydra apps that fail in one line.

Every `sa-*` command is a Hydra app (so `--cfg job`, overrides and `-m` sweeps work). Problems with the user's input
(an unknown key, a bad value, a missing or corrupt file, an unreachable endpoint) are reported as one line
`sa-xxx: error: <what is wrong>; <how to fix it>` with exit code 2. Set HYDRA_FULL_ERROR=1 for the full traceback.
Ctrl-C (SIGINT) ends a command with one line, `sa-xxx: interrupted; re-run the same command to resume`, exit 130.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf import CONFIG_DIR
from conf.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError, one_line
from conf.schema import register_schemas
from conf.schema.world import BUDGET_MOVED

# Config keys that were removed or renamed → what replaced them: an override naming one fails saying so.
REPLACED = dict.fromkeys(("backend.budget", "embedder.budget"), BUDGET_MOVED)

# Errors of a path the user chose (read-only disk, no permission, a file where a folder belongs, disk full).
PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC, errno.EDQUOT}


class _DropHydraJobBanner:
    """A stderr proxy that drops Hydra's "Error executing job with overrides" line (the error follows in one line)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return len(text) if text.startswith("Error executing job with overrides") else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def hydra_command(config_name: str, prog: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], None]]:
    """Turn `task(cfg)` into a console-script `main()` backed by `conf/<config_name>.yaml`."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], None]:
        register_schemas()
        hydra_main = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)(task)

        @functools.wraps(task)
        def main() -> None:
            before = os.environ.get("HYDRA_FULL_ERROR")  # "1": the user wants the full traceback
            os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's multi-line report
            stderr, sys.stderr = sys.stderr, _DropHydraJobBanner(sys.stderr)
            try:
                hydra_main()
            except (UserError, HydraException, OmegaConfBaseException, ValueError, OSError, KeyboardInterrupt) as error:
                line = None if before == "1" else report(error, prog)
                if line is None:
                    raise
                print(f"{prog}: {line}", file=sys.stderr)
                sys.exit(EXIT_INTERRUPTED if isinstance(error, KeyboardInterrupt) else EXIT_USER_ERROR)
            finally:
                sys.stderr = stderr
                os.environ.pop("HYDRA_FULL_ERROR", None)  # a caller in this process (a test) keeps its environment
                if before is not None:
                    os.environ["HYDRA_FULL_ERROR"] = before

        return main

    return decorate


def report(error: BaseException, prog: str) -> str | None:
    """The one line `prog` prints for `error` (after `prog: `), or None for an error that keeps its traceback."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted; re-run the same command to resume"
    if isinstance(error, UserError):
        return f"error: {one_line(error)}"
    if isinstance(error, (HydraException, OmegaConfBaseException)):
        return f"error: {replaced(error) or one_line(error)} (see `{prog} --cfg job` for valid keys)"
    if isinstance(error, ValueError) and str(error).startswith("Only one of --run"):  # Hydra's own flag check
        return f"error: {error}; run --cfg job without -m (and one value per key)"
    if isinstance(error, OSError) and error.errno in PATH_ERRNOS and error.filename is not None:
        # e.g. Hydra creating a run dir on a read-only disk, before the task runs
        return f"error: {error.filename}: {error.strerror}; use a folder this user can write (hydra.run.dir=...)"
    return None


def replaced(error: BaseException) -> str | None:
    """For an override of a removed or renamed key (`REPLACED`): one line naming what replaced it."""
    match = re.search(r"override '([\w.]+)'", str(error))
    key = match.group(1) if match else ""
    old = next((old for old in REPLACED if key == old or key.startswith(old + ".")), None)
    return f"{key} was removed; use {REPLACED[old]}" if old else None


def save_hydra_config(cfg: DictConfig, run_dir: str | os.PathLike | None = None) -> None:
    """Write `.hydra/{config,hydra,overrides}.yaml` as Hydra would. Commands that check a resume first set
    `hydra.output_subdir: null` and call this once the check has passed, so a refused resume leaves the folder's
    record of its own run as it was."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    folder = Path(run_dir if run_dir is not None else hydra_cfg.runtime.output_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    for name, node in (("config.yaml", cfg), ("hydra.yaml", OmegaConf.create({"hydra": hydra_cfg})),
                       ("overrides.yaml", hydra_cfg.overrides.task)):  # fmt: skip
        (folder / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")
