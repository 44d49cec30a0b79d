"""`raftpg ctl rolling-restart --daemon`: also replace each member's raftpg process (a new binary
on disk takes over), under the run's pause.

POST /restart {"daemon": true} makes the process exit with EX_TEMPFAIL; its supervisor (systemd's
RestartForceExitStatus=75) starts it again. Paused, the stopping process leaves PostgreSQL
running and the lease as it is, so the primary's new process reclaims its own lease: no failover,
no new timeline. A member counts as done when its raftpg.started_at (in /patroni) changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raftpg.cli.ctl.client import CtlError, Unreachable
from raftpg.cli.ctl.rolling_plan import RunState, voters_away, witness_in_raft
from raftpg.cli.ctl.session import Session
from raftpg.config.witness import WITNESS_ROLE

STATUS_TIMEOUT = 3.0


def _own(status: dict[str, Any]) -> dict[str, Any]:
    own = status.get("raftpg")
    return own if isinstance(own, dict) else {}


def raftpg_started(session: Session, name: str) -> float | None:
    """The member's raftpg process start time (Unix seconds, its own clock); None if unknown."""
    member = session.cluster().member(name)
    if member is None:
        raise CtlError(f"{name} is no longer a member of the cluster")
    value = _own(session.member_status(member, timeout=min(STATUS_TIMEOUT, session.client.timeout))) \
        .get("started_at")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def daemon_times(session: Session, names: list[str]) -> dict[str, float]:
    """started_at of every member, for the run's state; a member that does not publish it (an
    older raftpg) cannot be followed, so the run is refused."""
    times = {name: raftpg_started(session, name) for name in names}
    unknown = sorted(name for name, t in times.items() if t is None)
    if unknown:
        raise CtlError(f"rolling restart --daemon refused: {', '.join(unknown)} publish no raftpg.started_at "
                       "in /patroni (a raftpg too old to restart itself)")
    return {k: v for k, v in times.items() if v is not None}


def _status(session: Session, name: str) -> dict[str, Any] | None:
    member = session.cluster().member(name)
    if member is None:
        return None
    return session.member_status(member, timeout=min(STATUS_TIMEOUT, session.client.timeout))


def _healthy(session: Session, name: str, primary: bool, witness: bool) -> bool:
    """A replica streams again; the primary's new process holds the lease itself (it reclaimed it);
    a witness votes again."""
    status = _status(session, name)
    if status is None:
        return False
    if witness:
        return witness_in_raft(status)
    if primary:
        own = _own(status)
        return status.get("role") == "primary" and own.get("lease_holder") == name \
            and own.get("lease_time_left") is not None
    return status.get("replication_state") == "streaming"


def _history_length(session: Session) -> int:
    body = session.get("history").body
    return len(body) if isinstance(body, list) else 0


Wait = Callable[[str, Callable[[], bool]], None]


def restart_daemon(session: Session, state: RunState, name: str, wait: Wait, timeout: float) -> None:
    """Once every other Raft voter is connected to `name`, ask its raftpg to exit for its
    supervisor, then wait until a new process runs and the member is healthy again. For the
    primary, the lease must not have moved and no timeline begun."""
    member = session.cluster().member(name)
    if member is None:
        raise CtlError(f"{name} is no longer a member of the cluster")
    primary, witness = member.is_leader, member.role == WITNESS_ROLE

    def voters_connected() -> bool:
        status = _status(session, name)
        return status is not None and not voters_away(status)

    wait(f"every other Raft voter to be connected to {name} (its restart takes its vote away)", voters_connected)
    history = _history_length(session) if primary else 0
    before = state.daemons.get(name) or raftpg_started(session, name)
    try:
        response = session.send_to(member, "POST", "restart", {"daemon": True}, timeout=timeout)
    except Unreachable:
        response = None  # the answer may be lost as the process exits: the wait below decides
    if response is not None and response.status != 202:
        raise CtlError(f"{name}: raftpg restart not carried out: {response.message}")

    def replaced() -> bool:
        started = raftpg_started(session, name)
        return started is not None and started != before and _healthy(session, name, primary, witness)

    again = "hold its lease" if primary else "vote in Raft" if witness else "stream"
    wait(f"{name}'s raftpg to be replaced and {again} again", replaced)
    if primary:
        leader = session.cluster().leader
        if leader is None or leader.name != name or _history_length(session) != history:
            raise CtlError(f"{name}: the primary role moved while its raftpg restarted "
                           f"(now {leader.name if leader else 'none'}); the cluster stays paused")
