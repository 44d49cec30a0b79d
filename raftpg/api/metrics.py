"""/metrics in the Prometheus text exposition format (version 0.0.4).

Names follow Patroni's (patroni_primary, patroni_xlog_location, ...) with the prefix raftpg_, so
existing dashboards need only a rename; the lease and Raft gauges are raftpg's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from raftpg import __version__
from raftpg.api.backend import ClusterInfo
from raftpg.api.documents import lease_time_left
from raftpg.api.health import leader_lsn
from raftpg.config.witness import WITNESS_ROLE
from raftpg.consensus.model import RaftStatus
from raftpg.ha.status import NodeStatus
from raftpg.http.problems import PeerProblem

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _version_number(version: str) -> int:
    parts = [int(part) for part in re.findall(r"\d+", version)[:3]]
    major, minor, patch = [*parts, 0, 0, 0][:3]
    return major * 10000 + minor * 100 + patch


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class _Metric:
    name: str
    kind: str  # "gauge" | "counter"
    help: str
    samples: tuple[tuple[dict[str, str], float], ...]


class _Exposition:
    def __init__(self, scope: str, name: str) -> None:
        self.base = {"scope": scope, "name": name}
        self.metrics: list[_Metric] = []

    def add(self, name: str, help_text: str, value: float | bool | None, kind: str = "gauge") -> None:
        """A metric with one sample; None (unknown) leaves the sample out, as Prometheus expects."""
        samples: tuple[tuple[dict[str, str], float], ...] = () if value is None else (({}, float(value)),)
        self.metrics.append(_Metric(f"raftpg_{name}", kind, help_text, samples))

    def add_labelled(self, name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        self.metrics.append(_Metric(f"raftpg_{name}", "gauge", help_text, tuple(samples)))

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.metrics:
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            for labels, value in metric.samples:
                merged = {**self.base, **labels}
                text = ",".join(f'{key}="{_escape(val)}"' for key, val in merged.items())
                lines.append(f"{metric.name}{{{text}}} {_number(value)}")
        return "\n".join(lines) + "\n"


def render_metrics(status: NodeStatus, cluster: ClusterInfo, raft: RaftStatus, now: float, wall_now: float,
                   peer_problems: Mapping[str, PeerProblem]) -> str:
    """Every member's metrics; a witness (no PostgreSQL, never a lease holder, asks no peer) leaves
    the database member's out rather than reporting zeros an alert on `postgres_running == 0`
    would fire on."""
    out = _Exposition(status.scope, status.name)
    out.add("version", "raftpg version as MMmmpp (0.1.0 is 100).", _version_number(__version__))
    witness = status.role == WITNESS_ROLE
    out.add("witness", "1 if this member is a witness (a Raft vote, no PostgreSQL), 0 otherwise.", witness)
    if not witness:
        _database_metrics(out, status, cluster, now, peer_problems)
    if status.updated_at > 0:
        out.add("dcs_last_seen", "Unix time of the HA loop's last read of the cluster state.",
                int(wall_now - (now - status.updated_at)))
    out.add("status_age_seconds", "Seconds since the HA loop last refreshed this node's status.",
            round(max(0.0, now - status.updated_at), 3))
    out.add("cluster_unlocked", "1 if no member holds the lease, 0 otherwise.", status.lease_holder is None)
    out.add("is_paused", "1 if automatic failover is paused, 0 otherwise.", status.paused)
    out.add("lease_holder", "1 if the replicated state names this node as the lease holder, 0 otherwise.",
            cluster.lease_holder == status.name)
    out.add("lease_version", "Version of the lease (the fencing token), grows on every change.",
            cluster.lease_version)
    out.add("config_version", "Version of the dynamic configuration.", cluster.config_version)
    _raft_metrics(out, raft)
    return out.render()


def _database_metrics(out: _Exposition, status: NodeStatus, cluster: ClusterInfo, now: float,
                      peer_problems: Mapping[str, PeerProblem]) -> None:
    """What only a member running PostgreSQL can report."""
    out.add("postgres_running", "1 if PostgreSQL is running, 0 otherwise.", status.pg_running)
    out.add("primary", "1 if this node is a writable primary holding its own lease, 0 otherwise.",
            status.is_writable_primary(now))
    replica = status.role == "replica" and status.pg_running
    out.add("replica", "1 if this node is a running replica, 0 otherwise.", replica)
    out.add("sync_standby", "1 if this node is a synchronous standby, 0 otherwise.", status.sync_standby)
    out.add("quorum_standby", "1 if this node is a quorum standby, 0 otherwise.", status.quorum_standby)
    out.add("xlog_location", "Current WAL location on the primary, 0 if this node is not the primary.",
            status.wal_lsn if status.role == "primary" and status.wal_lsn is not None else 0, "counter")
    out.add("xlog_received_location", "Received WAL location on a replica, 0 if not a replica.",
            status.receive_lsn if replica and status.receive_lsn is not None else 0, "counter")
    out.add("xlog_replayed_location", "Replayed WAL location on a replica, 0 if not a replica.",
            status.replay_lsn if replica and status.replay_lsn is not None else 0, "counter")
    top = leader_lsn(cluster)
    position = max((lsn for lsn in (status.receive_lsn, status.replay_lsn) if lsn is not None), default=None)
    lag = max(0, top - position) if replica and top is not None and position is not None else None
    out.add("replication_lag_bytes", "Bytes this replica is behind the leader's published position.", lag)
    out.add("postgres_streaming", "1 if PostgreSQL streams WAL from an upstream, 0 otherwise.", status.streaming)
    out.add("postgres_timeline", "PostgreSQL timeline of this node (if running), 0 otherwise.",
            status.timeline if status.pg_running and status.timeline is not None else 0, "counter")
    out.add("postgres_server_version", "PostgreSQL version number (if running), 0 otherwise.",
            status.server_version if status.pg_running and status.server_version is not None else 0)
    out.add("pending_restart", "1 if PostgreSQL needs a restart to apply settings, 0 otherwise.",
            status.pending_restart)
    out.add("needs_reinit", "1 if this member cannot rejoin on its own and waits for `raftpg ctl reinit`, "
            "0 otherwise.", status.needs_reinit is not None)
    out.add_labelled("peer_problem", "1 for each peer this node cannot talk to for a TLS or authentication "
                     "reason (a peer that is merely down is not listed).",
                     [({"peer": peer, "kind": problem.kind.value}, 1.0)
                      for peer, problem in sorted(peer_problems.items())])
    out.add("lease_time_left_seconds", "Seconds until this process's own lease deadline, 0 if it holds none.",
            lease_time_left(status, now) or 0)


def _raft_metrics(out: _Exposition, raft: RaftStatus) -> None:
    out.add("raft_term", "Current Raft term.", raft.term, "counter")
    out.add("raft_commit_index", "Raft commit index.", raft.commit_index, "counter")
    out.add("raft_last_applied", "Last Raft log index applied by this replica.", raft.last_applied, "counter")
    out.add("raft_leader", "1 if this node's replica is the Raft leader, 0 otherwise.", raft.is_leader)
    out.add("raft_has_quorum", "1 if this replica is in contact with a Raft majority, 0 otherwise.",
            raft.has_quorum)
    out.add("raft_tick_thread_alive", "1 if the Raft tick thread is alive, 0 otherwise.", raft.tick_thread_alive)
    out.add("raft_journal_bytes", "Size of the Raft journal on disk in bytes.", raft.journal_bytes)
    out.add_labelled("raft_partner_connected", "1 if the Raft partner is connected, 0 otherwise.",
                     [({"addr": addr}, float(connected)) for addr, connected in sorted(raft.partners.items())])
