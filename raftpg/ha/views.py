"""What decide() sees: immutable views of the cluster (from Raft) and of this node.

The loop builds these from the Raft snapshot (ClusterView.from_snapshot), PostgreSQL status and
peers' REST answers; decide() reads nothing else. Everything is a frozen dataclass so a table-driven
test can build any situation by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from raftpg.config import DynamicConfig, Tags
from raftpg.config.witness import WITNESS_KIND
from raftpg.consensus import Snapshot
from raftpg.ha.sync import ASYNC, SyncSet
from raftpg.postgres.datadir import DataDirState


class PgRole(enum.Enum):
    """What PostgreSQL on this node is right now, as far as we could tell this cycle."""

    PRIMARY = "primary"
    REPLICA = "replica"
    STOPPED = "stopped"
    UNKNOWN = "unknown"  # postmaster alive but we could not query it


@dataclass(frozen=True)
class LeaseView:
    holder: str | None
    instance_id: str | None
    version: int
    revision: int
    ttl: float
    expired: bool  # judged on this node's clock: ttl after it applied the last change
    bootstrapping: bool = False
    lsn_at_handover: int | None = None

    @property
    def free(self) -> bool:
        return self.holder is None


@dataclass(frozen=True)
class MemberView:
    """Another member (or this one) as last published in Raft."""

    name: str
    instance_id: str = ""
    api_url: str = ""
    host: str = ""
    port: int = 0
    role: str = "unknown"
    state: str = "unknown"
    timeline: int | None = None
    lsn: int | None = None
    tags: Tags = field(default_factory=Tags)
    fresh: bool = True  # its last heartbeat was applied less than ttl ago
    age: float = 0.0  # seconds since its last heartbeat was applied here

    @staticmethod
    def from_record(name: str, record: Mapping[str, Any], fresh: bool, age: float = 0.0) -> MemberView:
        tags = record.get("tags") or {}
        return MemberView(
            name=name,
            instance_id=str(record.get("instance_id", "")),
            api_url=str(record.get("api_url", "")),
            host=str(record.get("host", "")),
            port=int(record.get("port", 0) or 0),
            role=str(record.get("role", "unknown")),
            state=str(record.get("state", "unknown")),
            timeline=_opt_int(record.get("timeline")),
            lsn=_opt_int(record.get("lsn")),
            tags=Tags(
                nofailover=bool(tags.get("nofailover", False)),
                failover_priority=int(tags.get("failover_priority", 1)),
                noloadbalance=bool(tags.get("noloadbalance", False)),
                clonefrom=bool(tags.get("clonefrom", False)),
                nosync=bool(tags.get("nosync", False)),
                replicatefrom=tags.get("replicatefrom"),
            ),
            fresh=fresh,
            age=age,
        )


@dataclass(frozen=True)
class PeerPosition:
    """A peer's answer to 'how far are you?', asked over its REST API during a leader race."""

    name: str
    reachable: bool
    role: str = "unknown"  # "primary" if it still runs as one
    lsn: int | None = None
    timeline: int | None = None
    nofailover: bool = False
    failover_priority: int = 1


@dataclass(frozen=True)
class FailoverRequest:
    """A switchover (leader named) or failover (only a candidate) asked for by an operator."""

    request_id: str
    leader: str | None
    candidate: str | None
    scheduled_at: float | None = None  # wall clock (Unix seconds), from the proposer
    accept_data_loss: bool = False

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> FailoverRequest:
        scheduled = record.get("scheduled_at")
        return FailoverRequest(
            request_id=str(record.get("request_id", "")),
            leader=record.get("leader") or None,
            candidate=record.get("candidate") or None,
            scheduled_at=float(scheduled) if scheduled is not None else None,
            accept_data_loss=bool(record.get("accept_data_loss", False)),
        )


@dataclass(frozen=True)
class SyncState:
    """Who PostgreSQL may count on for synchronous commits (DESIGN rule 5)."""

    leader: str | None = None
    members: frozenset[str] = frozenset()
    quorum: int = 0  # how many of `members` acknowledge each commit (ANY/FIRST n)

    def as_set(self) -> SyncSet:
        return SyncSet(self.members, self.quorum)

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> SyncState:
        return SyncState(
            leader=record.get("leader"),
            members=frozenset(record.get("members") or ()),
            quorum=int(record.get("quorum", 0) or 0),
        )


@dataclass(frozen=True)
class ClusterView:
    system_identifier: str | None  # None: the cluster was never initialised
    lease: LeaseView
    members: Mapping[str, MemberView]
    config: DynamicConfig
    failover: FailoverRequest | None = None
    sync: SyncState = SyncState()
    peers: Mapping[str, PeerPosition] = field(default_factory=lambda: MappingProxyType({}))  # race only
    # Seconds since each witness's record was applied here: only so that the primary forgets a
    # witness gone for member_slots_ttl, as it forgets a database member.
    witness_ages: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @staticmethod
    def from_snapshot(snap: Snapshot, config: DynamicConfig, now: float) -> ClusterView:
        """The local replica's state as decide() sees it: ages and lease expiry judged on our clock.
        Witness members (a Raft vote, no PostgreSQL) are left out: they are no replication peer,
        slot holder, race peer or candidate."""
        lease = snap.lease
        ages = {name: now - snap.member_applied_at.get(name, 0.0) for name in snap.members}
        databases = {name: record for name, record in snap.members.items() if record.get("kind") != WITNESS_KIND}
        members = {
            name: MemberView.from_record(name, record, fresh=ages[name] < config.ttl, age=ages[name])
            for name, record in databases.items()
        }
        return ClusterView(
            system_identifier=snap.initialize,
            lease=LeaseView(
                holder=lease.holder,
                instance_id=lease.instance_id,
                version=lease.version,
                revision=lease.revision,
                ttl=lease.ttl,
                expired=lease.expired(now),
                bootstrapping=lease.bootstrapping,
                lsn_at_handover=lease.lsn_at_handover,
            ),
            members=MappingProxyType(members),
            config=config,
            failover=FailoverRequest.from_record(snap.failover) if snap.failover else None,
            sync=SyncState.from_record(snap.sync or {}),
            witness_ages=MappingProxyType({name: ages[name] for name in snap.members if name not in databases}),
        )

    @property
    def paused(self) -> bool:
        return self.config.pause

    @property
    def holder_member(self) -> MemberView | None:
        return self.members.get(self.lease.holder) if self.lease.holder else None


@dataclass(frozen=True)
class LocalView:
    name: str
    instance_id: str
    now: float  # boottime
    wall_now: float
    tags: Tags
    data_dir: DataDirState
    role: PgRole
    system_identifier: str | None = None  # from pg_controldata, when the data dir is initialised
    timeline: int | None = None
    lsn: int | None = None  # primary: current WAL; replica: max(received, replayed)
    replay_lsn: int | None = None
    upstream: str | None = None  # member the walreceiver is configured to stream from
    streaming: bool = False
    was_primary: bool = False  # pg_control says it last ran as a primary (rewind may be needed)
    lease_deadline: float | None = None  # own committed deadline, set only by this process's renewals
    pg_down_since: float | None = None  # when PostgreSQL was first seen not running as our primary
    rewind_failed: bool = False
    bootstrap_failed: bool = False
    postgres_sync: SyncSet | None = ASYNC  # what synchronous_standby_names guarantees; None: blocking
    standbys: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # streaming: flush LSN
    sync_switch_lsn: int | None = None  # where PostgreSQL last changed synchronous_standby_names
    sync_waiting_since: float | None = None  # boottime since which no synchronous candidate (sync.sync_wait_since)
    rewind_hopeless: bool = False  # pg_rewind failed on our own WAL: retrying cannot help
    rewind_interrupted: bool = False  # a pg_rewind began changing the data directory and never finished
    needs_rewind: bool = False  # our standby could not start or stream: rewind if the timeline differs
    rewind_not_needed_from: str | None = None  # holder against which pg_rewind last found nothing to do
    standby_stuck: bool = False  # standby (running or still recovering) that has not streamed for longer than ttl
    standby_mode: bool = False  # standby.signal is there: a postmaster we cannot query yet is a recovering standby
    cannot_lead: str | None = None  # disk nearly full, required watchdog unavailable: step down, never lead

    def holds_lease(self, lease: LeaseView) -> bool:
        """The lease is ours in the log, and this process renewed it and the renewal committed."""
        return (
            lease.holder == self.name
            and lease.instance_id == self.instance_id
            and self.lease_deadline is not None
            and self.now < self.lease_deadline
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
