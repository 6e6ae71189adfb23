"""Calls run side by side leave nothing running behind them: a failure cancels the siblings and waits for them.

`asyncio.gather` alone lets the other calls run on after the first failure (their requests and retries then land
in the usage meters after the run has reported them); `asyncio.TaskGroup` does this, but only from Python 3.11.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def settle(tasks: list[asyncio.Future[Any]]) -> None:
    """Cancel what is still running and wait until every task has finished."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:  # a failure beside the one being raised must not warn "exception never retrieved"
        if not task.cancelled():
            task.exception()


async def gather_or_cancel(*calls: Awaitable[Any]) -> list[Any]:
    """`asyncio.gather(*calls)`, except that on the first failure (or a cancellation) the others are cancelled
    and awaited before it is raised."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        await settle(tasks)
