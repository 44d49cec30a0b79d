"""`raftpg run`: wire Raft, PostgreSQL, the HA loop and the REST API into one process."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import signal
import time
from pathlib import Path
from typing import IO

from raftpg.api import start_api
from raftpg.api.app import ApiOptions
from raftpg.cli import sdnotify
from raftpg.cli.backend import DaemonBackend
from raftpg.cli.self_exec import EX_TEMPFAIL
from raftpg.clock import boottime
from raftpg.config import Settings
from raftpg.consensus import ConsensusError, RaftNode, Snapshot, rejoin
from raftpg.consensus.options import raft_timings
from raftpg.fence.client import FenceClient
from raftpg.ha.loop import HaLoop
from raftpg.postgres.instance import PostgresInstance

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


def _wake_key(snap: Snapshot) -> tuple[object, ...]:
    """The parts of the Raft state whose change must wake the HA loop at once."""
    lease = snap.lease
    failover = snap.failover.get("request_id") if snap.failover else None
    return (lease.holder, lease.instance_id, lease.version, failover, snap.config_version, snap.initialize)


def check_duplicate_member(settings: Settings, snap: Snapshot, ttl: float) -> None:
    """A second live process publishing under our name from another address is refused."""
    record = snap.members.get(settings.name)
    if record is None:
        return
    elsewhere = record.get("raft_addr") not in (None, str(settings.raft.self_addr))
    fresh = boottime() - snap.member_applied_at.get(settings.name, 0.0) < ttl
    if elsewhere and fresh:
        raise StartupError(
            f"member name {settings.name!r} is already in use by a live process at {record.get('raft_addr')}; "
            "every node needs its own name"
        )


async def run_daemon(settings: Settings) -> int:
    started_at = time.time()
    if os.geteuid() == 0:
        logger.error("refusing to run as root: PostgreSQL refuses it too; run raftpg as the database OS user")
        return 2
    try:
        lock = lock_data_dir(settings.raft.data_dir)
    except StartupError as exc:
        logger.error("%s", exc)
        return 1
    try:
        return await _run(settings, started_at)
    except StartupError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        lock.close()


class _Reloader:
    """SIGHUP (systemd's ExecReload) does what `raftpg ctl reload` and POST /reload do: rewrite
    PostgreSQL's configuration from raftpg's and reload PostgreSQL. Before the HA loop runs
    there is nothing to reload, and a SIGHUP must not kill the daemon either."""

    def __init__(self) -> None:
        self.backend: DaemonBackend | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def on_sighup(self) -> None:
        if self.backend is None:
            logger.info("SIGHUP before the HA loop runs: nothing to reload yet")
            return
        task = asyncio.create_task(self._reload(self.backend))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _reload(backend: DaemonBackend) -> None:
        try:
            logger.info("SIGHUP: %s", await backend.request_reload())
        except Exception as exc:  # a failed reload is reported; the daemon carries on
            logger.error("SIGHUP: reload failed: %s", exc)


class _Exit:
    """How the process ends: 0 on SIGTERM/SIGINT, EX_TEMPFAIL when asked to restart itself."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.code = 0

    def restart(self) -> None:
        self.code = EX_TEMPFAIL
        self.stop.set()


async def _run(settings: Settings, started_at: float) -> int:
    ttl = settings.bootstrap.dcs.ttl
    ha: HaLoop | None = None
    last_key: list[tuple[object, ...]] = [()]

    def on_change() -> None:
        if ha is None:
            return
        key = _wake_key(raft.snapshot())
        if key != last_key[0]:
            last_key[0] = key
            ha.wake()

    joining = rejoin.pending(settings.raft.data_dir)
    if joining:
        logger.info("rejoining: this node's Raft log was wiped; it will not stand for Raft election "
                    "until a leader has sent it the cluster's log")
    elif not rejoin.has_log(settings.raft.data_dir) and (settings.postgresql.data_dir / "PG_VERSION").exists():
        logger.warning("the Raft log is empty but PostgreSQL data exists: if this node returns after a quorum "
                       "recovery, stop it and run `raftpg rejoin` first (README 'Losing quorum')")
    raft = RaftNode(scope=settings.scope, self_addr=str(settings.raft.self_addr),
                    partner_addrs=[str(a) for a in settings.raft.partner_addrs],
                    data_dir=settings.raft.data_dir, password=settings.raft.password,
                    timings=raft_timings(ttl), on_change=on_change, joining=joining)
    try:
        await raft.start()
    except ConsensusError as exc:
        raise StartupError(f"cannot start the Raft replica: {exc}") from exc
    exit_ = _Exit()
    stop = exit_.stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloader = _Reloader()
    loop.add_signal_handler(signal.SIGHUP, reloader.on_sighup)
    api = None
    try:
        pg = PostgresInstance(settings.postgresql, settings.name)
        fence = FenceClient(settings.raft.data_dir, settings.postgresql.data_dir)
        ha = HaLoop(settings, raft, pg, fence)
        backend = DaemonBackend(settings, raft, ha)
        api = await start_api(backend, ApiOptions(started_at=started_at, restart_daemon=exit_.restart))
        logger.info("REST API on %s; waiting for the Raft log to catch up", settings.restapi.listen)
        while not stop.is_set():
            try:
                await raft.barrier(timeout=max(ttl, 5.0))
                break
            except ConsensusError as exc:
                logger.warning("Raft barrier not committed yet (%s); no quorum? retrying", exc)
                sdnotify.notify("STATUS=waiting for a Raft majority (are the other members started?)")
                await asyncio.sleep(BARRIER_RETRY)
        if stop.is_set():
            return exit_.code
        if joining:
            raft.finish_joining()
            rejoin.done(settings.raft.data_dir)
        check_duplicate_member(settings, raft.snapshot(), ttl)
        logger.info("caught up with the Raft log (term %s); starting the HA loop as instance %s",
                    raft.raft_status().term, ha.instance_id)
        ha_task = asyncio.create_task(ha.run())
        reloader.backend = backend
        # Everything imported and built at start-up lives as long as the process: out of the cyclic
        # collector's reach, a full collection under API load pauses the loop ~30 ms instead of ~55.
        gc.freeze()
        sdnotify.notify(f"READY=1\nSTATUS=HA loop running (member {settings.name}, scope {settings.scope})")
        stop_task = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({ha_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if ha_task in done:
            stop_task.cancel()
            ha_task.result()
            return 1
        logger.info("stopping: handing over if we are the primary")
        sdnotify.notify("STOPPING=1\nSTATUS=stopping: handing over if primary")
        ha.stop()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(ha_task, timeout=max(ttl, 10.0))
        await ha.shutdown(handover_timeout=max(ttl, 10.0))
        return exit_.code
    finally:
        if api is not None:
            await api.stop()
        await raft.stop()
