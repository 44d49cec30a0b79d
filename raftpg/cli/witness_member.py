"""A witness member's one job besides voting: keep its member record in Raft (published when it
changes or when the heartbeat is due, the rule of ha/publishing.py) and the status its REST API
answers from. No HA loop, no PostgreSQL, no fence: a witness never holds the lease."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from raftpg import __version__
from raftpg.clock import boottime
from raftpg.config import DynamicConfig
from raftpg.config.in_force import ConfigInForce
from raftpg.config.witness import WITNESS_KIND, WITNESS_ROLE, WITNESS_TAGS, WitnessSettings
from raftpg.consensus import ConsensusError, RaftNode, Snapshot
from raftpg.ha.publishing import heartbeat_interval, should_publish
from raftpg.ha.status import NodeStatus

logger = logging.getLogger(__name__)

class TickThreadDied(Exception):
    """pysyncobj's tick thread is gone: this replica no longer votes, so the process must end."""


def witness_record(settings: WitnessSettings, instance_id: str) -> dict[str, Any]:
    """The record published in Raft. `host` is the REST API's, so `ctl list` shows where the witness
    runs; there is no PostgreSQL port."""
    return {
        "kind": WITNESS_KIND,
        "instance_id": instance_id,
        "raft_addr": str(settings.raft.self_addr),
        "api_url": settings.restapi.url,
        "host": settings.restapi.connect_address.host,
        "port": None,
        "role": WITNESS_ROLE,
        "state": "running",
        "tags": WITNESS_TAGS.to_dict(),
        "version": __version__,
        "updated": time.time(),
    }


def witness_status(settings: WitnessSettings, snap: Snapshot, config: DynamicConfig, now: float,
                   note: str) -> NodeStatus:
    return NodeStatus(name=settings.name, scope=settings.scope, role=WITNESS_ROLE, state="running",
                      tags=WITNESS_TAGS, paused=config.pause, lease_holder=snap.lease.holder,
                      lease_version=snap.lease.version, updated_at=now, last_decision=note)


class WitnessMember:
    """Publishes the record every loop_wait when due and refreshes the status the API reads."""

    def __init__(self, settings: WitnessSettings, raft: RaftNode) -> None:
        self.settings = settings
        self.raft = raft
        self.instance_id = uuid.uuid4().hex
        self._status = NodeStatus(name=settings.name, scope=settings.scope, role=WITNESS_ROLE, state="starting",
                                  tags=WITNESS_TAGS)
        self._config = ConfigInForce(settings.bootstrap.dcs)

    def status(self) -> NodeStatus:
        return self._status

    def config(self) -> DynamicConfig:
        snap = self.raft.snapshot()
        return self._config.get(snap.config_version, snap.config)

    async def run(self) -> None:
        """Until cancelled; raises TickThreadDied when the Raft replica stopped working."""
        while True:
            config = self.config()
            await self.cycle(config)
            await asyncio.sleep(config.loop_wait)

    async def cycle(self, config: DynamicConfig) -> None:
        if not self.raft.tick_thread_alive():
            raise TickThreadDied("the Raft tick thread died: this witness no longer votes; exiting")
        name = self.settings.name
        record = witness_record(self.settings, self.instance_id)
        snap = self.raft.snapshot()
        note = "witness: a Raft vote, no PostgreSQL"
        if should_publish(snap.members.get(name), record, snap.member_applied_at.get(name), boottime(),
                          heartbeat_interval(config.ttl, config.loop_wait)):
            try:
                await self.raft.publish_member(name, record, timeout=config.retry_timeout)
            except ConsensusError as exc:
                logger.warning("could not publish our member record: %s", exc)
                note = f"witness: could not publish its member record: {exc}"
            snap = self.raft.snapshot()
        self._status = witness_status(self.settings, snap, config, boottime(), note)
