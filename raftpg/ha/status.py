"""The node status the HA loop publishes after every cycle, for the REST API and metrics.

Health checks answer from this cached object, so load on the API never touches PostgreSQL or Raft
on the request path and can never delay a lease renewal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raftpg.config import Tags


@dataclass(frozen=True)
class ReplicationInfo:
    application_name: str
    client_addr: str | None
    state: str
    sync_state: str
    write_lsn: int | None = None
    flush_lsn: int | None = None
    replay_lsn: int | None = None


@dataclass(frozen=True)
class NodeStatus:
    name: str
    scope: str
    role: str  # "primary" | "replica" | "uninitialized" | "unknown"
    state: str  # "running" | "stopped" | "starting" | "creating replica" | "rewinding" | ...
    tags: Tags = field(default_factory=Tags)
    pg_running: bool = False
    in_recovery: bool | None = None
    timeline: int | None = None
    server_version: int | None = None
    system_identifier: str | None = None
    wal_lsn: int | None = None  # primary: current WAL position
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    upstream: str | None = None  # replica: member it streams from
    streaming: bool = False
    replication: tuple[ReplicationInfo, ...] = ()
    pending_restart: bool = False
    paused: bool = False
    lease_holder: str | None = None
    lease_version: int = 0
    lease_deadline: float | None = None  # boottime; set only while this process holds the lease
    lease_margin: float = 0.5  # /primary answers 200 only until lease_deadline - lease_margin
    sync_standby: bool = False
    quorum_standby: bool = False
    postmaster_start_time: str | None = None
    updated_at: float = 0.0  # boottime of the cycle that produced this status
    last_decision: str = ""
    # Set while this member cannot rejoin without an operator (pg_rewind cannot succeed on its WAL
    # and it may not re-clone on its own): what is wrong and the command that fixes it.
    needs_reinit: str | None = None

    def is_writable_primary(self, now: float) -> bool:
        """The /primary rule: a running primary whose own committed lease has not run out."""
        return (
            self.role == "primary"
            and self.pg_running
            and self.in_recovery is False
            and self.lease_deadline is not None
            and now < self.lease_deadline - self.lease_margin
        )

    def xlog(self) -> dict[str, Any]:
        if self.role == "primary":
            return {"location": self.wal_lsn}
        return {"received_location": self.receive_lsn, "replayed_location": self.replay_lsn,
                "paused": False}
