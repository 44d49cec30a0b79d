"""`raftpg run` with a witness configuration: the Raft replica, the member record and the REST API,
with the same start-up barrier, duplicate-name check, systemd notifications and signals as a
database member's daemon (cli/startup.py), and no HA loop, PostgreSQL or fence."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from raftpg.api import start_api
from raftpg.api.app import ApiOptions
from raftpg.cli import sdnotify
from raftpg.cli.startup import Exit, catch_up, check_duplicate_member, rejoining, run_locked, start_replica
from raftpg.cli.witness_backend import WitnessBackend
from raftpg.cli.witness_member import WitnessMember
from raftpg.config import WitnessSettings

logger = logging.getLogger(__name__)


async def run_witness(settings: WitnessSettings) -> int:
    started_at = time.time()
    return await run_locked(settings.raft.data_dir, lambda: _run(settings, started_at))


def _on_sighup() -> None:
    logger.info("SIGHUP: a witness has no PostgreSQL to reload; changes to node.yml need a restart of raftpg")


async def _run(settings: WitnessSettings, started_at: float) -> int:
    ttl = settings.bootstrap.dcs.ttl
    joining = rejoining(settings.raft.data_dir)
    raft = await start_replica(settings.scope, settings.raft, ttl, lambda: None, joining)
    exit_ = Exit()
    exit_.handle_signals(_on_sighup)
    api = None
    try:
        member = WitnessMember(settings, raft)
        api = await start_api(WitnessBackend(settings, raft, member),
                              ApiOptions(started_at=started_at, restart_daemon=exit_.restart))
        logger.info("witness member: REST API on %s; waiting for the Raft log to catch up", settings.restapi.listen)
        if not await catch_up(raft, settings.raft.data_dir, ttl, exit_.stop, joining):
            return exit_.code
        check_duplicate_member(settings.name, str(settings.raft.self_addr), raft.snapshot(), ttl)
        logger.info("caught up with the Raft log (term %s); witness member %s running as instance %s "
                    "(a Raft vote, no PostgreSQL)", raft.raft_status().term, settings.name, member.instance_id)
        member_task = asyncio.create_task(member.run())
        sdnotify.notify(f"READY=1\nSTATUS=witness running (member {settings.name}, scope {settings.scope})")
        if not await exit_.wait(member_task):
            return 1
        logger.info("stopping the witness")
        sdnotify.notify("STOPPING=1\nSTATUS=stopping the witness")
        member_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await member_task
        return exit_.code
    finally:
        if api is not None:
            await api.stop()
        await raft.stop()
