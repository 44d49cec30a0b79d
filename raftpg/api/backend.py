"""What the REST API needs from the running node, and nothing more.

The HA loop implements NodeBackend. The API reads cached state through it and *requests*
actions; it never runs pg_ctl or writes Raft state itself (DESIGN: layers). Keeping the
surface this small is what lets the HTTP layer be tested against a fake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from raftpg.config import Settings, WitnessSettings
from raftpg.consensus.model import RaftStatus, Snapshot
from raftpg.ha.status import NodeStatus
from raftpg.http.problems import PeerProblem


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ClusterInfo:
    """The replicated cluster state as the local replica last applied it (may be slightly stale).

    Records are the JSON published in Raft: a member record has the keys name, role, state,
    host, port, api_url, timeline, lsn, receive_lsn, replay_lsn, tags, pending_restart; a history
    entry has timeline, lsn, reason, time (Unix seconds) and leader; `sync` has leader, members
    and quorum; `failover` has request_id, leader, candidate, scheduled_at, accept_data_loss.
    """

    scope: str | None
    members: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty)
    lease_holder: str | None = None
    lease_version: int = 0
    config: Mapping[str, Any] = field(default_factory=_empty)
    config_version: int = 0
    failover: Mapping[str, Any] | None = None
    failover_dropped: Mapping[str, Any] | None = None
    sync: Mapping[str, Any] = field(default_factory=_empty)
    history: tuple[Mapping[str, Any], ...] = ()
    operations: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty)
    """name -> {revision, record}: operator operations in progress (GET/PUT /operations/<name>)."""

    @property
    def paused(self) -> bool:
        return bool(self.config.get("pause", False))

    @staticmethod
    def from_snapshot(snapshot: Snapshot) -> ClusterInfo:
        return ClusterInfo(
            scope=snapshot.scope,
            members=snapshot.members,
            lease_holder=snapshot.lease.holder,
            lease_version=snapshot.lease.version,
            config=snapshot.config,
            config_version=snapshot.config_version,
            failover=snapshot.failover,
            failover_dropped=snapshot.failover_dropped,
            sync=snapshot.sync,
            history=snapshot.history,
            operations=snapshot.operations,
        )


class NodeBackend(Protocol):
    """Implemented by the HA loop. Sync methods must be cheap local reads: health checks call them.

    Action methods may raise `raftpg.consensus.errors.ConsensusError` (answered 503) and
    ValueError for a request the node refuses (answered 503 for restart/reinitialize as Patroni
    does, 409 for Raft membership changes), with a message meant for the operator.
    """

    @property
    def settings(self) -> Settings | WitnessSettings:
        """The API reads restapi and bootstrap.dcs, which every kind of member has."""
        ...

    def status(self) -> NodeStatus:
        """The status the HA loop cached after its last cycle (invalidated at once on demotion)."""
        ...

    def now(self) -> float:
        """CLOCK_BOOTTIME, the clock NodeStatus.updated_at and lease_deadline are on."""
        ...

    def cluster(self) -> ClusterInfo: ...

    def raft_status(self) -> RaftStatus: ...

    def peer_problems(self) -> Mapping[str, PeerProblem]:
        """Peers this node currently cannot talk to for a TLS or authentication reason."""
        ...

    async def set_failover(self, request: Mapping[str, Any] | None) -> bool:
        """Store (None: drop) the pending switchover/failover request; False if it did not commit."""
        ...

    async def set_config(self, config: Mapping[str, Any], expected_version: int) -> bool:
        """Compare-and-set of the dynamic configuration; False if the version moved on meanwhile."""
        ...

    async def set_operation(self, name: str, record: Mapping[str, Any] | None, expected_revision: int) -> bool:
        """Compare-and-set of an operation's progress record (None ends it); False if the revision moved."""
        ...

    async def request_restart(
        self,
        *,
        scheduled_at: float | None,
        role: str | None,
        postgres_version: str | None,
        restart_pending: bool,
    ) -> str:
        """Restart PostgreSQL now (returns when done) or at `scheduled_at` (Unix seconds)."""
        ...

    async def cancel_restart(self) -> bool:
        """Drop a scheduled restart; False when none was scheduled."""
        ...

    async def request_reload(self) -> str: ...

    async def request_reinitialize(self) -> str: ...

    async def catch_up(self) -> None:
        """Return once the local replica has applied everything committed before the call."""
        ...

    async def add_raft_member(self, addr: str) -> None: ...

    async def remove_raft_member(self, addr: str) -> None: ...
