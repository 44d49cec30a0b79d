"""Validating switchover and failover requests before they are written to Raft.

The checks and their status codes follow Patroni's documentation: a switchover names the
current leader and needs a healthy cluster; a failover names a candidate and works without a
leader. One deliberate difference (DESIGN rule 5): in synchronous mode a failover to a member
outside the synchronous set is refused unless the operator sets accept_data_loss, because
that member may miss writes the old primary acknowledged.

The HA loop re-checks everything when it acts; these checks exist to give the operator a
clear answer at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raftpg.api.backend import ClusterInfo
from raftpg.api.bodies import ApiError, check_keys, get_bool, get_str, parse_schedule
from raftpg.config import DynamicConfig

SWITCHOVER_KEYS = ("leader", "candidate", "scheduled_at")
FAILOVER_KEYS = ("leader", "candidate", "scheduled_at", "accept_data_loss")


@dataclass(frozen=True)
class Plan:
    """A validated request, ready for NodeBackend.set_failover."""

    kind: str  # "switchover" | "failover"
    request_id: str
    leader: str | None
    candidate: str | None
    scheduled_at: float | None
    accept_data_loss: bool

    def record(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "leader": self.leader,
            "candidate": self.candidate,
            "scheduled_at": self.scheduled_at,
            "accept_data_loss": self.accept_data_loss,
        }

    def done(self, cluster: ClusterInfo) -> bool:
        """The lease went where the request asked (to any other member when no candidate was named)."""
        holder = cluster.lease_holder
        if self.candidate is not None:
            return holder == self.candidate
        return holder is not None and holder != self.leader


def plan(action: str, body: Mapping[str, Any], cluster: ClusterInfo, config: DynamicConfig,
         wall_now: float) -> Plan:
    """Check a POST /switchover or /failover body against the cluster; raise ApiError if refused."""
    check_keys(body, FAILOVER_KEYS if action == "failover" else SWITCHOVER_KEYS)
    leader = get_str(body, "leader")
    candidate = get_str(body, "candidate")
    accept_data_loss = get_bool(body, "accept_data_loss")
    schedule = get_str(body, "scheduled_at")
    paused = config.pause
    if action == "failover" and candidate is None:
        raise ApiError(400, "Failover could be performed only to a specific candidate")
    if action == "switchover" and leader is None:
        raise ApiError(400, "Switchover could be performed only from a specific leader")
    scheduled_at = None
    if schedule is not None:
        if action == "failover":
            raise ApiError(400, "Failover can't be scheduled")
        if paused:
            raise ApiError(400, "Can't schedule switchover in the paused state")
        scheduled_at = parse_schedule(schedule, "scheduled_at", wall_now)
    if paused and candidate is None:
        raise ApiError(400, "Switchover is possible only to a specific candidate in a paused state")
    if leader is not None and leader == candidate:
        raise ApiError(400, "Switchover target and source are the same")
    if leader is not None and leader != cluster.lease_holder:
        raise ApiError(412, f"leader name does not match: {leader} is not the leader "
                            f"(the leader is {cluster.lease_holder or 'nobody'})")
    if cluster.failover is not None:
        raise ApiError(409, f"a switchover/failover request is already pending: {dict(cluster.failover)}; "
                            "cancel it with DELETE /switchover first")
    kind = "switchover" if leader is not None else "failover"
    if candidate is not None and candidate not in cluster.members:
        raise ApiError(412, f"candidate {candidate} is not a member of the cluster")
    if scheduled_at is None:
        _check_now(kind, cluster, config, leader, candidate, accept_data_loss)
    return Plan(kind, uuid.uuid4().hex, leader, candidate, scheduled_at, accept_data_loss)


def _check_now(kind: str, cluster: ClusterInfo, config: DynamicConfig, leader: str | None,
               candidate: str | None, accept_data_loss: bool) -> None:
    """An immediate request: the candidate (or some member) must be able to take over now."""
    sync_mode = config.synchronous_mode in ("on", "quorum")
    sync_members = set(cluster.sync.get("members") or ())
    if candidate is None:
        eligible = [name for name, record in cluster.members.items()
                    if name != leader and _healthy_replica(record) is None
                    and (not sync_mode or name in sync_members)]
        if not eligible:
            raise ApiError(412, "no good candidates have been found")
        return
    if candidate == cluster.lease_holder:
        raise ApiError(412, f"candidate {candidate} is already the leader")
    problem = _healthy_replica(cluster.members[candidate])
    if problem is not None:
        raise ApiError(412, f"candidate {candidate} {problem}")
    if sync_mode and candidate not in sync_members:
        if kind == "switchover":
            raise ApiError(412, f"candidate name does not match with sync_standby: {candidate} is not in the "
                                f"synchronous set {sorted(sync_members)}")
        if not accept_data_loss:
            raise ApiError(412, f"candidate {candidate} is not a synchronous standby "
                                f"(synchronous set {sorted(sync_members)}): it may lack acknowledged "
                                "writes; set accept_data_loss to fail over anyway")


def _healthy_replica(record: Mapping[str, Any]) -> str | None:
    """Why this member cannot be promoted now, or None if it can."""
    role, state = record.get("role"), record.get("state")
    if role != "replica" or state not in ("running", "streaming"):
        return f"is not a running replica (role {role}, state {state})"
    if (record.get("tags") or {}).get("nofailover"):
        return "has the nofailover tag"
    return None
