"""What this node tells the others and the REST API: its member record in Raft and its NodeStatus.

Built after a cycle from the views, PostgreSQL's status and the core's memory; pure functions.
"""

from __future__ import annotations

import time
from typing import Any

from raftpg import __version__
from raftpg.config import Settings
from raftpg.config.witness import POSTGRES_KIND
from raftpg.ha.core import needs_reinit
from raftpg.ha.lease import fence_margin
from raftpg.ha.memory import Memory, PgState
from raftpg.ha.status import NodeStatus, ReplicationInfo
from raftpg.ha.views import ClusterView, LocalView, PgRole
from raftpg.postgres.controldata import ControlData
from raftpg.postgres.status import PgStatus

_PUBLISHED_ROLES = {PgRole.PRIMARY: "primary", PgRole.REPLICA: "replica"}


def system_identifier(pg: PgStatus, control: ControlData | None) -> str | None:
    if pg.system_identifier is not None:
        return str(pg.system_identifier)
    return str(control.system_identifier) if control is not None else None


def member_record(settings: Settings, instance_id: str, local: LocalView, pg: PgStatus, state: PgState,
                  reinit_cue: str | None) -> dict[str, Any]:
    """The record published in Raft (also the heartbeat, publishing.py)."""
    return {
        "kind": POSTGRES_KIND,
        "instance_id": instance_id,
        "raft_addr": str(settings.raft.self_addr),
        "api_url": settings.restapi.url,
        "host": settings.postgresql.connect_address.host,
        "port": settings.postgresql.connect_address.port,
        "role": _PUBLISHED_ROLES.get(local.role, "unknown"),
        "state": state.value if not pg.running else PgState.RUNNING.value,
        "timeline": local.timeline,
        "lsn": local.lsn,
        "receive_lsn": pg.receive_lsn,
        "replay_lsn": pg.replay_lsn,
        "upstream": local.upstream if local.role is PgRole.REPLICA else None,
        "tags": settings.tags.to_dict(),
        "version": __version__,
        "pending_restart": pg.pending_restart,
        "needs_reinit": reinit_cue,
        "server_version": pg.server_version,
        "updated": time.time(),
    }


def node_status(settings: Settings, local: LocalView, pg: PgStatus, cluster: ClusterView, memory: Memory,
                lease_deadline: float | None, last_decision: str, now: float) -> NodeStatus:
    """What the REST API answers from until the next cycle (`lease_deadline`: ours, if we hold it)."""
    config = cluster.config
    role = _PUBLISHED_ROLES.get(local.role, "unknown")
    if cluster.system_identifier is None and not pg.running:
        role = "uninitialized"
    # The holder is never its own synchronous standby, even while a record inherited from the
    # previous holder (kept across acquire, rule 5) still lists it, until it narrows.
    standby_in_sync = settings.name in cluster.sync.members and settings.name != cluster.lease.holder
    return NodeStatus(
        name=settings.name,
        scope=settings.scope,
        role=role,
        state=PgState.RUNNING.value if pg.running else memory.state.value,
        tags=settings.tags,
        pg_running=pg.running,
        in_recovery=pg.in_recovery,
        timeline=local.timeline,
        server_version=pg.server_version,
        system_identifier=local.system_identifier,
        wal_lsn=pg.lsn if local.role is PgRole.PRIMARY else None,
        receive_lsn=pg.receive_lsn,
        replay_lsn=pg.replay_lsn,
        upstream=local.upstream,
        streaming=pg.streaming,
        replication=tuple(
            ReplicationInfo(r.application_name, None, r.state, r.sync_state, r.write_lsn,
                            r.flush_lsn, r.replay_lsn) for r in pg.replication
        ),
        pending_restart=pg.pending_restart,
        paused=config.pause,
        lease_holder=cluster.lease.holder,
        lease_version=cluster.lease.version,
        lease_deadline=lease_deadline,
        lease_margin=fence_margin(config.ttl),
        sync_standby=standby_in_sync and config.synchronous_mode == "on",
        quorum_standby=standby_in_sync and config.synchronous_mode == "quorum",
        updated_at=now,
        last_decision=last_decision,
        needs_reinit=needs_reinit(memory, local, config, settings.scope),
    )
