"""The user-error contract without Hydra: any module (backends, memory, environment, training) raises `UserError`
and the command layer (conf/cli.py) prints it as one line `sa-xxx: error: ...` with exit code 2."""

from __future__ import annotations

import tempfile
from pathlib import Path

from omegaconf.errors import OmegaConfBaseException

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class UserError(Exception):
    """Bad input from the user (config value, data file, endpoint fault): shown as one line, exit code 2."""


def require(condition: bool, message: str) -> None:
    """Raise `UserError(message)` unless `condition` holds."""
    if not condition:
        raise UserError(message)


def shown(value: object) -> str:
    """A config value as the user wrote it, for a message: `0` for a float field's 0.0, else its repr."""
    return repr(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def one_line(error: BaseException) -> str:
    """Collapse an exception (and an OmegaConf cause) into a single readable line."""
    parts = [line.strip() for line in str(error).splitlines() if line.strip()]
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException):
        parts += [line.strip() for line in str(cause).splitlines() if line.strip() and line.strip() not in parts]
    return "; ".join(p for p in parts if not p.startswith("object_type=")) or type(error).__name__


def require_writable(folder: Path, head: str, fix: str, create: bool = False) -> None:
    """One `UserError` `<head> is not writable (<why>); <fix>` unless a file can be created in `folder` (made first
    when `create`): sa-simulate's run dir, sa-train's and sa-eval's output folders."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise UserError(f"{head} is not writable ({error.strerror or error}); {fix}") from None
