"""Polling a condition until a deadline: the one helper for "wait until X, at most T seconds".

The synchronous forms serve the local-cluster launcher, the tests and the benchmarks; the async
form serves code on the event loop, where a blocking sleep would stall every other task.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """The first truthy value `probe` returns; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Whether `condition` held within `timeout` seconds (no exception: the caller decides)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


async def async_wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, interval: float = 0.05
) -> bool:
    """wait_until for the event loop: `condition` may be a coroutine function; the pauses between
    tries do not block the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = condition()
        if await outcome if inspect.isawaitable(outcome) else outcome:
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(interval)
