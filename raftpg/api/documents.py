"""JSON documents the API answers with, in Patroni's shapes (field names, nesting, units).

Tools written for Patroni (HAProxy checks, monitoring, scripts) read these unchanged; raftpg's
own facts (lease, Raft) live under a separate "raftpg" key so they never collide with Patroni's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from raftpg import __version__
from raftpg.api.backend import ClusterInfo
from raftpg.api.health import leader_lsn, replication_state
from raftpg.consensus.model import RaftStatus
from raftpg.ha.status import NodeStatus
from raftpg.http.problems import PeerProblem
from raftpg.postgres.lsn import format_lsn


def iso_time(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).isoformat()


def lease_time_left(status: NodeStatus, now: float) -> float | None:
    """Seconds until this process's own lease deadline; None when it does not hold the lease."""
    if status.lease_deadline is None:
        return None
    return round(max(0.0, status.lease_deadline - now), 3)


def node_document(status: NodeStatus, now: float, wall_now: float, raft: RaftStatus | None,
                  peer_problems: Mapping[str, PeerProblem] | None = None) -> dict[str, Any]:
    """/patroni (and the body of GET health checks, without `raft` and `peer_problems`, which
    only /patroni shows)."""
    doc: dict[str, Any] = {"state": status.state, "role": status.role}
    if status.postmaster_start_time is not None:
        doc["postmaster_start_time"] = status.postmaster_start_time
    if status.server_version is not None:
        doc["server_version"] = status.server_version
    doc["xlog"] = status.xlog()
    doc["timeline"] = status.timeline
    if status.replication:
        doc["replication"] = [
            {
                "application_name": r.application_name,
                "client_addr": r.client_addr,
                "state": r.state,
                "sync_state": r.sync_state,
                "write_lsn": r.write_lsn,
                "flush_lsn": r.flush_lsn,
                "replay_lsn": r.replay_lsn,
            }
            for r in status.replication
        ]
    state = replication_state(status)
    if state is not None:
        doc["replication_state"] = state
    if status.lease_holder is None:
        doc["cluster_unlocked"] = True
    if status.updated_at > 0:
        doc["dcs_last_seen"] = int(wall_now - (now - status.updated_at))
    doc["tags"] = status.tags.to_dict()
    if status.system_identifier is not None:
        doc["database_system_identifier"] = status.system_identifier
    doc["pending_restart"] = status.pending_restart
    doc["pause"] = status.paused
    doc["patroni"] = {"version": __version__, "scope": status.scope, "name": status.name}
    own: dict[str, Any] = {
        "lease_holder": status.lease_holder,
        "lease_version": status.lease_version,
        "lease_time_left": lease_time_left(status, now),
        "sync_standby": status.sync_standby,
        "quorum_standby": status.quorum_standby,
        "upstream": status.upstream,
        "status_age": round(max(0.0, now - status.updated_at), 3),
        "last_decision": status.last_decision,
        "needs_reinit": status.needs_reinit,
    }
    if raft is not None:
        own["raft"] = raft_document(raft)
    if peer_problems is not None:
        own["peer_problems"] = peer_problems_document(peer_problems)
    doc["raftpg"] = own
    return doc


def peer_problems_document(problems: Mapping[str, PeerProblem]) -> dict[str, dict[str, str]]:
    """name -> {kind, reason, since}: peers that fail for a reason an operator must fix."""
    return {name: {"kind": p.kind.value, "reason": p.reason, "since": iso_time(p.since)}
            for name, p in sorted(problems.items())}


def raft_document(raft: RaftStatus) -> dict[str, Any]:
    return {
        "self_addr": raft.self_addr,
        "leader": raft.leader,
        "is_leader": raft.is_leader,
        "term": raft.term,
        "commit_index": raft.commit_index,
        "last_applied": raft.last_applied,
        "has_quorum": raft.has_quorum,
        "partners": dict(raft.partners),
        "tick_thread_alive": raft.tick_thread_alive,
        "journal_bytes": raft.journal_bytes,
        "log_len": raft.log_len,
    }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def member_role(name: str, record: Mapping[str, Any], cluster: ClusterInfo, synchronous_mode: str) -> str:
    """Patroni's /cluster roles: leader, sync_standby, quorum_standby, replica (else what it published)."""
    if name == cluster.lease_holder:
        return "leader"
    role = str(record.get("role", "unknown"))
    if role == "replica" and name in (cluster.sync.get("members") or ()):
        return "quorum_standby" if synchronous_mode == "quorum" else "sync_standby"
    return role


def _api_url(record: Mapping[str, Any]) -> str:
    """Patroni publishes the member's /patroni URL; members here publish the API's base URL."""
    base = str(record.get("api_url", ""))
    return base if not base or base.endswith("/patroni") else base.rstrip("/") + "/patroni"


def cluster_document(cluster: ClusterInfo, synchronous_mode: str) -> dict[str, Any]:
    top = leader_lsn(cluster)
    members = []
    for name in sorted(cluster.members):
        record = cluster.members[name]
        role = member_role(name, record, cluster, synchronous_mode)
        entry: dict[str, Any] = {
            "name": name,
            "role": role,
            "state": record.get("state", "unknown"),
            "api_url": _api_url(record),
            "host": record.get("host"),
            "port": record.get("port"),
            "timeline": record.get("timeline"),
            "tags": dict(record.get("tags") or {}),
        }
        if record.get("pending_restart"):
            entry["pending_restart"] = True
        if record.get("needs_reinit"):
            entry["needs_reinit"] = str(record["needs_reinit"])
        if role != "leader":
            for key, lag_key in (("receive_lsn", "receive_lag"), ("replay_lsn", "replay_lag"), ("lsn", "lag")):
                lsn = _int(record.get(key))
                if lsn is not None:
                    entry[key] = format_lsn(lsn)
                entry[lag_key] = max(0, top - lsn) if top is not None and lsn is not None else "unknown"
        members.append(entry)
    doc: dict[str, Any] = {"members": members, "scope": cluster.scope, "pause": cluster.paused}
    failover = cluster.failover
    if failover is not None and failover.get("scheduled_at") is not None:
        scheduled: dict[str, Any] = {"at": iso_time(float(failover["scheduled_at"])), "from": failover.get("leader")}
        if failover.get("candidate"):
            scheduled["to"] = failover["candidate"]
        doc["scheduled_switchover"] = scheduled
    doc["raftpg"] = {
        "lease_holder": cluster.lease_holder,
        "lease_version": cluster.lease_version,
        "config_version": cluster.config_version,
        "sync": {
            "leader": cluster.sync.get("leader"),
            "members": sorted(cluster.sync.get("members") or ()),
            "quorum": cluster.sync.get("quorum", 0),
        },
        "failover": dict(failover) if failover is not None else None,
    }
    return doc


def history_document(cluster: ClusterInfo) -> list[list[Any]]:
    """[timeline, lsn, reason, timestamp, new_leader] per entry, as Patroni's /history."""
    rows: list[list[Any]] = []
    for entry in cluster.history:
        when = entry.get("time")
        rows.append([
            entry.get("timeline"),
            entry.get("lsn"),
            entry.get("reason", ""),
            iso_time(float(when)) if isinstance(when, int | float) else None,
            entry.get("leader"),
        ])
    return rows
