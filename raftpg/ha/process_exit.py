"""Wait for a process to exit without polling: a pidfd (Linux 5.3+) becomes readable when it does.

The HA loop watched the postmaster by reading postmaster.pid and /proc every 100 ms: ten event
loop wake-ups a second, each resolving the data directory's real path, on every member for as long
as it runs. A pidfd in the event loop costs nothing until the process exits. Where pidfd_open is
missing (another OS, an older kernel) or fails, the wait falls back to checking every POLL_INTERVAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from raftpg.procfs import process_alive

POLL_INTERVAL = 0.1
"""Seconds between checks where no pidfd can be had."""


async def wait_exit(pid: int) -> None:
    """Return once process `pid` has exited (a zombie counts as exited); at once if it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd here (or no descriptor left): poll
        while process_alive(pid):  # noqa: ASYNC110 (another process, no event to wait on)
            await asyncio.sleep(POLL_INTERVAL)
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


class PostmasterWatch:
    """Calls on_exit as soon as the postmaster dies while the HA loop believes it runs.

    While `running()` is false, and after each report, nothing is watched until status_changed()
    (each HA cycle's new status). Otherwise it waits for the exit of the postmaster that
    `postmaster_pid()` names; a postmaster already replaced by then (a restart) is watched next."""

    def __init__(self, postmaster_pid: Callable[[], int | None], running: Callable[[], bool],
                 on_exit: Callable[[], None]) -> None:
        self._postmaster_pid = postmaster_pid
        self._running = running
        self._on_exit = on_exit
        self._status_changed = asyncio.Event()

    def status_changed(self) -> None:
        self._status_changed.set()

    async def run(self) -> None:
        while True:
            if self._running():
                pid = self._postmaster_pid()
                if pid is not None:
                    await wait_exit(pid)
                    if not self._running() or self._postmaster_pid() is not None:
                        continue  # the loop already knows, or PostgreSQL was restarted meanwhile
                self._on_exit()
            # Nothing runs, or its death was just reported: the next status says what runs now.
            self._status_changed.clear()
            await self._status_changed.wait()
