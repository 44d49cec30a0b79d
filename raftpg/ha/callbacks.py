"""User callbacks as Patroni runs them: `script ACTION ROLE SCOPE` after PostgreSQL changed.

A callback never blocks the HA loop: it runs as its own process in its own session, bounded by a
timeout, and a newer callback kills one still running (its news is stale), as Patroni does. A
callback that fails or hangs is logged with its exit status and the tail of its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from enum import StrEnum

logger = logging.getLogger(__name__)

OUTPUT_TAIL = 400  # characters of a failed callback's output kept in the log line


class CallbackEvent(StrEnum):
    ON_START = "on_start"
    ON_STOP = "on_stop"
    ON_RESTART = "on_restart"
    ON_RELOAD = "on_reload"
    ON_ROLE_CHANGE = "on_role_change"


class CallbackRunner:
    """Runs at most one callback at a time; `fire` returns at once."""

    def __init__(self, commands: Mapping[CallbackEvent, Sequence[str]], scope: str, timeout: float) -> None:
        self._commands = {event: tuple(argv) for event, argv in commands.items() if argv}
        self._scope = scope
        self._timeout = timeout
        self._running: asyncio.Task[None] | None = None

    def fire(self, event: CallbackEvent, role: str) -> None:
        argv = self._commands.get(event)
        if argv is None:
            return
        previous = self._running
        self._running = asyncio.get_running_loop().create_task(
            self._run(previous, [*argv, event.value, role, self._scope]))

    async def close(self) -> None:
        """Wait for the callback in flight (it is bounded by the timeout)."""
        if self._running is not None:
            await self._running

    async def _run(self, previous: asyncio.Task[None] | None, argv: list[str]) -> None:
        if previous is not None and not previous.done():
            previous.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            logger.warning("callback %s could not start: %s", argv[0], exc)
            return
        try:
            output, _ = await asyncio.wait_for(process.communicate(), self._timeout)
        except TimeoutError:
            _kill_session(process.pid)
            await process.wait()
            logger.warning("callback %s did not finish within %gs: killed", " ".join(argv), self._timeout)
            return
        except asyncio.CancelledError:
            _kill_session(process.pid)
            await process.wait()
            logger.info("callback %s killed: a newer callback replaces it", " ".join(argv))
            raise
        if process.returncode != 0:
            tail = output.decode(errors="replace").strip()[-OUTPUT_TAIL:]
            logger.warning("callback %s exited with %s: %s", " ".join(argv), process.returncode, tail or "no output")
        else:
            logger.info("callback %s done", " ".join(argv))


def _kill_session(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
