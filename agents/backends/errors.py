"""Exceptions raised by backends and wrappers. Messages never contain API keys."""

from __future__ import annotations


class BackendError(Exception):
    """Base class for backend failures."""


class TransientError(BackendError):
    """Worth retrying: rate limit, server error, timeout, dropped connection. `retry_after` in seconds if known."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class PermanentError(BackendError):
    """Not worth retrying for this request (e.g. 400 prompt too long)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CallFailed(BackendError):
    """A call that finally failed after `attempts` tries; the usage meter records it (it is reported, not lost)."""

    def __init__(self, model: str, attempts: int, cause: BaseException) -> None:
        super().__init__(f"{model}: call failed after {attempts} attempt(s): {cause}")
        self.model = model
        self.attempts = attempts
        self.cause = cause


def redact(text: str, secret: str | None) -> str:
    """Remove a secret (an API key) from a message."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text
