"""Health-check decisions (200 or 503), as pure functions of cached state.

Load balancers poll these many times a second; they read the status the HA loop cached and the
local replica's cluster record, never PostgreSQL or Raft, so API load cannot delay a renewal.
The rules follow Patroni's documented endpoints; /primary is stricter (DESIGN, REST API): it
trusts only this process's own committed lease deadline, never "holder == me" in local state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from raftpg.api.backend import ClusterInfo
from raftpg.config import DynamicConfig
from raftpg.config.witness import WITNESS_ROLE
from raftpg.ha.status import NodeStatus

_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_SIZE_RE = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int | None:
    """Bytes from "1048576", "1024kB", "16MB", "1GB" (PostgreSQL units, powers of 1024); None if invalid."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        return None
    unit = _UNITS.get(match.group(2).lower())
    return None if unit is None else int(match.group(1)) * unit


@dataclass(frozen=True)
class Probe:
    """Everything one health check may look at."""

    status: NodeStatus
    cluster: ClusterInfo
    config: DynamicConfig
    now: float
    query: Mapping[str, str]


def leader_lsn(cluster: ClusterInfo) -> int | None:
    """The lease holder's WAL position as it last published it (Patroni: last_leader_operation)."""
    record = cluster.members.get(cluster.lease_holder) if cluster.lease_holder else None
    value = record.get("lsn") if record else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_primary(p: Probe) -> bool:
    return p.status.is_writable_primary(p.now)


def has_lease(p: Probe) -> bool:
    """Patroni's /leader: this process holds the lease, whatever PostgreSQL is doing."""
    s = p.status
    return s.lease_deadline is not None and p.now < s.lease_deadline - s.lease_margin


def is_replica(p: Probe) -> bool:
    """A running replica that may take read traffic and passes the lag, state and tag filters."""
    s = p.status
    if not (s.role == "replica" and s.pg_running and s.state == "running" and not s.tags.noloadbalance):
        return False
    return _lag_ok(p, None, _replica_position(s)) and _replication_state_ok(p) and _tags_ok(p)


def is_sync(p: Probe) -> bool:
    return is_replica(p) and p.status.sync_standby


def is_quorum(p: Probe) -> bool:
    return is_replica(p) and p.status.quorum_standby


def is_async(p: Probe) -> bool:
    return is_replica(p) and not p.status.sync_standby and not p.status.quorum_standby


def is_read_only(p: Probe) -> bool:
    return is_primary(p) or is_replica(p)


def is_read_only_sync(p: Probe) -> bool:
    return is_primary(p) or is_sync(p)


def is_read_only_quorum(p: Probe) -> bool:
    return is_primary(p) or is_quorum(p)


def is_standby_leader(p: Probe) -> bool:
    """raftpg has no standby clusters yet."""
    return False


def is_healthy(p: Probe) -> bool:
    """PostgreSQL is up; on a witness (no PostgreSQL), that it runs."""
    return (p.status.pg_running or p.status.role == WITNESS_ROLE) and p.status.state == "running"


def is_alive(p: Probe) -> bool:
    """The HA loop ran recently: within ttl on a primary, 2*ttl elsewhere (as Patroni's /liveness)."""
    limit = p.config.ttl if p.status.role == "primary" else 2 * p.config.ttl
    return p.now - p.status.updated_at <= limit


def is_ready(p: Probe) -> bool:
    """Writable primary, or a replica that streams and is within ?lag (default maximum_lag_on_failover)."""
    if is_primary(p):
        return True
    s = p.status
    if not (s.role == "replica" and s.pg_running and s.streaming):
        return False
    if p.query.get("mode", "apply") not in ("apply", "write"):
        return False
    return _lag_ok(p, p.config.maximum_lag_on_failover, _readiness_position(p))


def _lag_ok(p: Probe, default: int | None, position: int | None) -> bool:
    """`position` within the allowed lag behind the leader's published LSN.

    An unknown leader position (no holder, or it published none) does not fail the check, as in
    Patroni: with the leader gone, replicas should keep serving reads. A malformed ?lag fails it,
    so a typo in a load balancer's configuration shows up instead of passing silently.
    """
    text = p.query.get("lag")
    max_lag = default if text is None else parse_size(text)
    if text is not None and max_lag is None:
        return False
    if max_lag is None:
        return True
    top = leader_lsn(p.cluster)
    if top is None:
        return True
    return position is not None and top - position <= max_lag


def _readiness_position(p: Probe) -> int | None:
    """?mode=apply (default) judges the replayed position, ?mode=write the received one."""
    return p.status.receive_lsn if p.query.get("mode") == "write" else p.status.replay_lsn


def _replica_position(status: NodeStatus) -> int | None:
    positions = [lsn for lsn in (status.receive_lsn, status.replay_lsn) if lsn is not None]
    return max(positions) if positions else None


def _replication_state_ok(p: Probe) -> bool:
    wanted = p.query.get("replication_state")
    if wanted is None:
        return True
    return wanted == replication_state(p.status)


def replication_state(status: NodeStatus) -> str | None:
    if status.role != "replica" or not status.pg_running:
        return None
    return "streaming" if status.streaming else "in archive recovery"


def _tags_ok(p: Probe) -> bool:
    """?tag_<key>=<value> must equal this member's tag (booleans as true/false); absent tags fail."""
    tags = p.status.tags.to_dict()
    for key, wanted in p.query.items():
        if not key.startswith("tag_"):
            continue
        name = key[len("tag_"):]
        if name not in tags:
            return False
        value = tags[name]
        if isinstance(value, bool):
            if wanted.lower() != ("true" if value else "false"):
                return False
        elif str(value) != wanted:
            return False
    return True


HEALTH_CHECKS: Mapping[str, Callable[[Probe], bool]] = {
    "/": is_primary,
    "/primary": is_primary,
    "/master": is_primary,
    "/read-write": is_primary,
    "/leader": has_lease,
    "/standby-leader": is_standby_leader,
    "/standby_leader": is_standby_leader,
    "/replica": is_replica,
    "/read-only": is_read_only,
    "/synchronous": is_sync,
    "/sync": is_sync,
    "/read-only-sync": is_read_only_sync,
    "/quorum": is_quorum,
    "/read-only-quorum": is_read_only_quorum,
    "/asynchronous": is_async,
    "/async": is_async,
    "/health": is_healthy,
    "/liveness": is_alive,
    "/readiness": is_ready,
}
"""Path -> check. /leader is Patroni's: the lease is held, whatever PostgreSQL's role."""
