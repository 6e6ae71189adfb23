"""Per-call timeout: an attempt slower than `seconds` becomes a TransientError (so the retry layer retries it)."""

from __future__ import annotations

import asyncio

from agents.backends.base import ChatBackend, Completion
from agents.backends.errors import TransientError
from agents.backends.wrapper import Call, Wrapper


class Timeout(Wrapper):
    """Cancel an attempt after `seconds`."""

    def __init__(self, inner: ChatBackend, seconds: float) -> None:
        super().__init__(inner)
        self.seconds = seconds

    async def around(self, call: Call, tokens: int) -> Completion:
        try:
            if hasattr(asyncio, "timeout"):  # Python >= 3.11: no extra task
                async with asyncio.timeout(self.seconds):
                    return await call()
            return await asyncio.wait_for(call(), self.seconds)
        except (TimeoutError, asyncio.TimeoutError) as error:
            raise TransientError(f"timed out after {self.seconds:g} s") from error
