"""`raftpg run`: wire Raft, PostgreSQL, the HA loop and the REST API into one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time

from raftpg.api import start_api
from raftpg.api.app import ApiOptions
from raftpg.cli import sdnotify
from raftpg.cli.backend import DaemonBackend
from raftpg.cli.startup import (
    Exit,
    catch_up,
    check_duplicate_member,
    rejoining,
    run_locked,
    start_replica,
)
from raftpg.config import Settings
from raftpg.consensus import Snapshot, rejoin
from raftpg.fence.client import FenceClient
from raftpg.ha.loop import HaLoop
from raftpg.postgres.instance import PostgresInstance

logger = logging.getLogger(__name__)

def _wake_key(snap: Snapshot) -> tuple[object, ...]:
    """The parts of the Raft state whose change must wake the HA loop at once."""
    lease = snap.lease
    failover = snap.failover.get("request_id") if snap.failover else None
    return (lease.holder, lease.instance_id, lease.version, failover, snap.config_version, snap.initialize)


async def run_daemon(settings: Settings) -> int:
    started_at = time.time()
    return await run_locked(settings.raft.data_dir, lambda: _run(settings, started_at))


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

    joining = rejoining(settings.raft.data_dir)
    if not joining and not rejoin.has_log(settings.raft.data_dir) \
            and (settings.postgresql.data_dir / "PG_VERSION").exists():
        logger.warning("the Raft log is empty but PostgreSQL data exists: if this node returns after a quorum "
                       "recovery, stop it and run `raftpg rejoin` first (README 'Losing quorum')")
    raft = await start_replica(settings.scope, settings.raft, ttl, on_change, joining)
    exit_ = Exit()
    stop = exit_.stop
    reloader = _Reloader()
    exit_.handle_signals(reloader.on_sighup)
    api = None
    try:
        pg = PostgresInstance(settings.postgresql, settings.name)
        fence = FenceClient(settings.raft.data_dir, settings.postgresql.data_dir)
        ha = HaLoop(settings, raft, pg, fence)
        backend = DaemonBackend(settings, raft, ha)
        api = await start_api(backend, ApiOptions(started_at=started_at, restart_daemon=exit_.restart))
        logger.info("REST API on %s; waiting for the Raft log to catch up", settings.restapi.listen)
        if not await catch_up(raft, settings.raft.data_dir, ttl, stop, joining):
            return exit_.code
        check_duplicate_member(settings.name, str(settings.raft.self_addr), raft.snapshot(), ttl)
        logger.info("caught up with the Raft log (term %s); starting the HA loop as instance %s",
                    raft.raft_status().term, ha.instance_id)
        ha_task = asyncio.create_task(ha.run())
        reloader.backend = backend
        # Everything imported and built at start-up lives as long as the process: out of the cyclic
        # collector's reach, a full collection under API load pauses the loop ~30 ms instead of ~55.
        gc.freeze()
        sdnotify.notify(f"READY=1\nSTATUS=HA loop running (member {settings.name}, scope {settings.scope})")
        if not await exit_.wait(ha_task):
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
