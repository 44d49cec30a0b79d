"""process_exit: wait_exit returns when the process exits, by pidfd or, without one, by polling;
PostmasterWatch reports a postmaster's death while the HA loop believes it runs."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from raftpg.ha import process_exit
from raftpg.ha.process_exit import PostmasterWatch, wait_exit

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


async def exits_when_killed() -> None:
    child = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        waiting = asyncio.create_task(wait_exit(child.pid))
        await asyncio.sleep(0.2)
        assert not waiting.done(), "returned while the process was alive"
        child.kill()
        await asyncio.wait_for(waiting, timeout=10)
    finally:
        if child.returncode is None:
            child.kill()
        await asyncio.wait_for(child.wait(), timeout=10)


async def test_returns_when_the_process_exits() -> None:
    await exits_when_killed()


@pytest.mark.parametrize("error", [errno.ENOSYS, errno.EMFILE])
async def test_without_a_pidfd_it_polls(monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    def no_pidfd(pid: int) -> int:
        raise OSError(error, "no pidfd")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    monkeypatch.setattr(process_exit, "POLL_INTERVAL", 0.01)
    await exits_when_killed()


async def test_a_process_already_gone_returns_at_once() -> None:
    child = await asyncio.create_subprocess_exec("true")
    await asyncio.wait_for(child.wait(), timeout=10)
    await asyncio.wait_for(wait_exit(child.pid), timeout=5)


class Postmaster:
    """What the watch reads: whether the loop believes PostgreSQL runs, and the postmaster's pid."""

    def __init__(self) -> None:
        self.running = False
        self.pid: int | None = None
        self.exits = 0


async def test_the_watch_reports_a_postmaster_exit_only_while_believed_running() -> None:
    seen = Postmaster()
    exited = asyncio.Event()

    def on_exit() -> None:
        seen.exits += 1
        seen.running = False
        exited.set()

    watch = PostmasterWatch(lambda: seen.pid, lambda: seen.running, on_exit)
    task = asyncio.create_task(watch.run())
    first = await asyncio.create_subprocess_exec("sleep", "60")
    second = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        seen.pid = first.pid  # running, but the loop does not know yet: nothing is reported
        first.kill()
        await first.wait()
        await asyncio.sleep(0.1)
        assert seen.exits == 0
        seen.pid, seen.running = second.pid, True  # a new status: PostgreSQL runs
        watch.status_changed()
        await asyncio.sleep(0.1)
        assert seen.exits == 0, "reported while the postmaster was alive"
        seen.pid = None
        second.kill()
        await asyncio.wait_for(exited.wait(), timeout=10)
        assert seen.exits == 1
    finally:
        task.cancel()
        await reap(*(first, second))


async def test_a_postmaster_replaced_before_its_exit_was_seen_is_watched_next() -> None:
    seen = Postmaster()
    exited = asyncio.Event()

    def on_exit() -> None:  # the loop would now publish a status saying stopped: here it does not
        seen.exits += 1
        exited.set()

    watch = PostmasterWatch(lambda: seen.pid, lambda: seen.running, on_exit)
    old = await asyncio.create_subprocess_exec("sleep", "60")
    new = await asyncio.create_subprocess_exec("sleep", "60")
    seen.pid, seen.running = old.pid, True
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.sleep(0.1)
        seen.pid = new.pid  # restarted: the old one's exit is no news
        old.kill()
        await old.wait()
        await asyncio.sleep(0.2)
        assert seen.exits == 0
        seen.pid = None
        new.kill()
        await new.wait()
        await asyncio.wait_for(exited.wait(), timeout=10)
        await asyncio.sleep(0.1)
        assert seen.exits == 1, "reported again without a new status"
        watch.status_changed()  # still believed running, no postmaster: reported again
        await wait_for_exits(seen, 2)
    finally:
        task.cancel()
        await reap(*(old, new))


async def wait_for_exits(seen: Postmaster, count: int) -> None:
    for _ in range(500):
        if seen.exits >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{seen.exits} exits reported, expected {count}")


async def reap(*children: asyncio.subprocess.Process) -> None:
    for child in children:
        if child.returncode is None:
            child.kill()
            await child.wait()
