"""What `raftpg run` does around a member's own work, for database members and witnesses alike:
one live process per Raft data directory, the Raft replica started and caught up with the log (the
start-up barrier), the duplicate-name check, and the signals that stop the process."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from raftpg.cli import sdnotify
from raftpg.cli.self_exec import EX_TEMPFAIL
from raftpg.clock import boottime
from raftpg.config import RaftSettings
from raftpg.consensus import ConsensusError, RaftNode, Snapshot, rejoin
from raftpg.consensus.options import raft_timings

logger = logging.getLogger(__name__)

BARRIER_RETRY = 1.0


class StartupError(Exception):
    pass


def lock_data_dir(data_dir: Path) -> IO[str]:
    """One live raftpg per Raft data directory; a crash releases the lock with the process."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = (data_dir / "raftpg.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StartupError(f"another raftpg process is running with {data_dir}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


async def run_locked(data_dir: Path, body: Callable[[], Awaitable[int]]) -> int:
    """Run `body` as the one process of this Raft data directory, never as root; a StartupError
    is logged and ends the process with 1."""
    if os.geteuid() == 0:
        logger.error("refusing to run as root: PostgreSQL refuses it too; run raftpg as the database OS user")
        return 2
    try:
        lock = lock_data_dir(data_dir)
    except StartupError as exc:
        logger.error("%s", exc)
        return 1
    try:
        return await body()
    except StartupError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        lock.close()


def check_duplicate_member(name: str, raft_addr: str, snap: Snapshot, ttl: float) -> None:
    """A second live process publishing under our name from another address is refused."""
    record = snap.members.get(name)
    if record is None:
        return
    elsewhere = record.get("raft_addr") not in (None, raft_addr)
    fresh = boottime() - snap.member_applied_at.get(name, 0.0) < ttl
    if elsewhere and fresh:
        raise StartupError(
            f"member name {name!r} is already in use by a live process at {record.get('raft_addr')}; "
            "every node needs its own name"
        )


class Exit:
    """How the process ends: 0 on SIGTERM/SIGINT, EX_TEMPFAIL when asked to restart itself."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.code = 0

    def restart(self) -> None:
        self.code = EX_TEMPFAIL
        self.stop.set()

    async def wait(self, task: asyncio.Task[None]) -> bool:
        """Until the process is told to stop (True) or `task` ends first (False; its exception is raised)."""
        stop_task = asyncio.create_task(self.stop.wait())
        done, _ = await asyncio.wait({task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            stop_task.cancel()
            task.result()
            return False
        return True

    def handle_signals(self, on_sighup: Callable[[], None]) -> None:
        """SIGTERM/SIGINT stop the process; SIGHUP is the member's reload (it must never kill it)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, on_sighup)


def rejoining(data_dir: Path) -> bool:
    """Whether `raftpg rejoin` wiped this node's Raft log: it then waits for a leader's copy."""
    joining = rejoin.pending(data_dir)
    if joining:
        logger.info("rejoining: this node's Raft log was wiped; it will not stand for Raft election "
                    "until a leader has sent it the cluster's log")
    return joining


async def start_replica(scope: str, settings: RaftSettings, ttl: float, on_change: Callable[[], None],
                        joining: bool) -> RaftNode:
    raft = RaftNode(scope=scope, self_addr=str(settings.self_addr),
                    partner_addrs=[str(a) for a in settings.partner_addrs],
                    data_dir=settings.data_dir, password=settings.password,
                    timings=raft_timings(ttl), on_change=on_change, joining=joining)
    try:
        await raft.start()
    except ConsensusError as exc:
        raise StartupError(f"cannot start the Raft replica: {exc}") from exc
    return raft


async def catch_up(raft: RaftNode, data_dir: Path, ttl: float, stop: asyncio.Event, joining: bool) -> bool:
    """Wait until a no-op barrier we proposed has committed and applied here (DESIGN: start-up);
    False when the process was told to stop first."""
    while not stop.is_set():
        try:
            await raft.barrier(timeout=max(ttl, 5.0))
            break
        except ConsensusError as exc:
            logger.warning("Raft barrier not committed yet (%s); no quorum? retrying", exc)
            sdnotify.notify("STATUS=waiting for a Raft majority (are the other members started?)")
            await asyncio.sleep(BARRIER_RETRY)
    if stop.is_set():
        return False
    if joining:
        raft.finish_joining()
        rejoin.done(data_dir)
    return True
