"""The pure half of `raftpg ctl rolling-restart`: when to refuse, which replica takes over, and the
run's record kept in Raft (GET/PUT /operations/rolling_restart).

A member counts as restarted when its postmaster start time differs from the one recorded when
the run began: each member is compared with its own clock, so clock skew between hosts and
between ctl and the cluster cannot mark a member done (or not done) by mistake. Only the
heartbeat, which says whether another ctl still drives the run, compares two ctl hosts' clocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from types import MappingProxyType
from typing import Any

from raftpg.cli.ctl.model import ClusterView, MemberView
from raftpg.config.witness import WITNESS_ROLE

STANDBY_ROLES = ("sync_standby", "quorum_standby")
RECORD_VERSION = 1
HEARTBEAT_INTERVAL = 5.0
"""Seconds between the driving ctl's heartbeats while it waits for a step."""
STALE_AFTER = 30.0
"""A run whose heartbeat is older than this is taken over without --take-over (its ctl died)."""


def _empty() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Owner:
    """The ctl process driving the run, for the operator to find it."""

    host: str
    pid: int

    def __str__(self) -> str:
        return f"{self.host} (pid {self.pid})"


@dataclass(frozen=True)
class RunState:
    """The run's plan and progress: the primary it started from, every member's postmaster start
    time (Unix seconds, the member's own clock) before anything was restarted, and who drives it."""

    old_primary: str
    started: Mapping[str, float] = field(default_factory=_empty)
    daemons: Mapping[str, float] = field(default_factory=_empty)
    """With --daemon: each member's raftpg process start time (its /patroni raftpg.started_at)."""
    owner: Owner = Owner("unknown", 0)
    began_at: float = 0.0
    """Unix time (the first owner's clock) the run began."""
    heartbeat_at: float = 0.0
    """Unix time (the current owner's clock) it last said it is alive."""
    step: str = ""
    """What the owner is doing now ("" between steps)."""
    done: tuple[str, ...] = ()
    """Steps finished, "member: action", in order: what the run shows, not what it decides on."""
    halted: str = ""
    """Why the last ctl stopped driving it (an error, ^C); "" while one drives it."""

    @property
    def daemon(self) -> bool:
        return bool(self.daemons)

    @property
    def witnesses(self) -> tuple[str, ...]:
        """With --daemon, the witness members whose raftpg the run replaces: in `daemons` but not
        in `started`, as they run no PostgreSQL."""
        return tuple(sorted(set(self.daemons) - set(self.started)))

    @property
    def replicas(self) -> tuple[str, ...]:
        """The database members other than the primary the run started from, in the order restarted."""
        return tuple(sorted(n for n in self.started if n != self.old_primary))

    def restarted(self, name: str, start_time: float | None) -> bool:
        return _changed(self.started.get(name), start_time)

    def daemon_done(self, name: str, started_at: float | None) -> bool:
        return _changed(self.daemons.get(name), started_at)

    def beat(self, now: float, step: str | None = None) -> RunState:
        return replace(self, heartbeat_at=now, step=self.step if step is None else step)

    def finished(self, what: str, now: float) -> RunState:
        return replace(self, heartbeat_at=now, step="", done=(*self.done, what))

    def taken_over(self, owner: Owner, now: float) -> RunState:
        return replace(self, owner=owner, heartbeat_at=now, halted="")

    def halt(self, why: str) -> RunState:
        return replace(self, step="", halted=why)

    def to_record(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, "old_primary": self.old_primary, "started": dict(self.started),
                "daemons": dict(self.daemons), "owner": {"host": self.owner.host, "pid": self.owner.pid},
                "began_at": self.began_at, "heartbeat_at": self.heartbeat_at, "step": self.step,
                "done": list(self.done), "halted": self.halted}

    @staticmethod
    def from_record(doc: Mapping[str, Any]) -> RunState | None:
        """None for anything this version did not write."""
        if doc.get("version") != RECORD_VERSION:
            return None
        try:
            owner = doc["owner"]
            return RunState(
                old_primary=_text(doc["old_primary"]),
                started=MappingProxyType({str(k): _seconds(v) for k, v in doc["started"].items()}),
                daemons=MappingProxyType({str(k): _seconds(v) for k, v in doc["daemons"].items()}),
                owner=Owner(_text(owner["host"]), int(owner["pid"])),
                began_at=_seconds(doc["began_at"]),
                heartbeat_at=_seconds(doc["heartbeat_at"]),
                step=_text(doc["step"]),
                done=tuple(_text(s) for s in doc["done"]),
                halted=_text(doc["halted"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def describe(self, now: float) -> str:
        """One line for the operator: who drives it, since when, doing what."""
        if self.halted:
            return f"rolling restart started {_clock(self.began_at)}, stopped by {self.owner}: {self.halted}"
        doing = self.step or (f"last done: {self.done[-1]}" if self.done else "starting")
        return (f"rolling restart started {_clock(self.began_at)} by {self.owner}; {doing}; "
                f"last heartbeat {max(0.0, now - self.heartbeat_at):.0f}s ago")


def alive_refusal(state: RunState, now: float, take_over: bool) -> str | None:
    """Why this ctl must not continue the run: its owner still beats (unless --take-over)."""
    if take_over or state.halted or now - state.heartbeat_at >= STALE_AFTER:
        return None
    return (f"another ctl is driving this run: {state.describe(now)}. Wait for it, or if it is gone "
            f"(killed, lost session), wait {STALE_AFTER:.0f}s after its last heartbeat or pass --take-over")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected seconds, got {value!r}")
    return float(value)


def _clock(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _changed(before: float | None, now: float | None) -> bool:
    return before is not None and now is not None and now != before


def _lag(member: MemberView) -> int | None:
    lag = member.replay_lag if member.replay_lag is not None else member.receive_lag
    return lag if isinstance(lag, int) else None


def without_witnesses(cluster: ClusterView) -> ClusterView:
    """The members whose PostgreSQL a rolling restart restarts: a witness runs none."""
    return replace(cluster, members=tuple(m for m in cluster.members if m.role != WITNESS_ROLE))


def witnesses(cluster: ClusterView) -> tuple[str, ...]:
    return tuple(sorted(m.name for m in cluster.members if m.role == WITNESS_ROLE))


def _raft(status: Mapping[str, Any]) -> Mapping[str, Any]:
    own = status.get("raftpg")
    raft = own.get("raft") if isinstance(own, Mapping) else None
    return raft if isinstance(raft, Mapping) else {}


def witness_in_raft(status: Mapping[str, Any]) -> bool:
    """A witness's /patroni says it votes again: running (it caught up with the Raft log and
    published its record) and in contact with a Raft majority."""
    return (status.get("role") == WITNESS_ROLE and status.get("state") == "running"
            and _raft(status).get("has_quorum") is True)


def voters_away(status: Mapping[str, Any]) -> tuple[str, ...]:
    """The Raft partners a member's /patroni says it is not connected to ("unknown" when it shows
    none). Restarting its raftpg takes its vote away for a while, so --daemon waits until this is
    empty: with 2 database members and a witness, one more vote away is the Raft majority lost,
    and a paused primary that cannot renew its lease is stopped by its fence."""
    partners = _raft(status).get("partners")
    if not isinstance(partners, Mapping) or not partners:
        return ("unknown",)
    return tuple(sorted(str(addr) for addr, connected in partners.items() if connected is not True))


class Action(Enum):
    """A step of the run; the value is how `--dry-run` shows it."""

    PAUSE = "pause"
    WITNESS_RAFTPG = "restart raftpg (witness)"
    RESTART_POSTGRES = "restart PostgreSQL"
    RESTART_RAFTPG = "restart raftpg"
    PRIMARY_RAFTPG = "restart raftpg, keeping the lease"
    SWITCHOVER = "switchover to the best restarted replica"
    RESUME = "resume"
    REJOIN = "resume; PostgreSQL starts again as a replica"


@dataclass(frozen=True)
class Planned:
    member: str
    action: Action


CLUSTER = "cluster"
"""The `member` of the steps that act on the whole cluster (pause, resume)."""


def plan(state: RunState) -> tuple[Planned, ...]:
    """Every step of the run in the order it is carried out, one at a time: each waits until its
    member is back before the next begins, so at most one raftpg is away from Raft at once.

    The witnesses' raftpg first, once paused: every database member runs then, and a witness
    whose new binary does not come up stops the run before any database member was touched. Then
    each replica (PostgreSQL, then its raftpg), the primary's raftpg (keeping its lease), the one
    switchover, resume, and the old primary's PostgreSQL starting again as a replica."""
    old = state.old_primary
    steps = [Planned(CLUSTER, Action.PAUSE)]
    steps += [Planned(name, Action.WITNESS_RAFTPG) for name in state.witnesses]
    for name in state.replicas:
        steps.append(Planned(name, Action.RESTART_POSTGRES))
        if state.daemon:
            steps.append(Planned(name, Action.RESTART_RAFTPG))
    if state.daemon:
        steps.append(Planned(old, Action.PRIMARY_RAFTPG))
    steps += [Planned(old, Action.SWITCHOVER), Planned(CLUSTER, Action.RESUME), Planned(old, Action.REJOIN)]
    return tuple(steps)


def refusal(cluster: ClusterView, streaming: Mapping[str, bool], max_lag: int) -> str | None:
    """Why the cluster is not healthy enough to start a rolling restart; None if it is.

    `streaming` says, per replica, whether its /patroni reports replication_state streaming."""
    leader = cluster.leader
    if leader is None:
        return f"cluster {cluster.scope} has no primary"
    if cluster.paused:
        return (f"cluster {cluster.scope} is already paused (maintenance by someone else?); "
                "resume it first with `raftpg ctl resume`")
    if cluster.scheduled_switchover is not None:
        return (f"a switchover is scheduled ({dict(cluster.scheduled_switchover)}); "
                "cancel it with `raftpg ctl flush switchover`")
    if len(cluster.members) < 2:
        return "no replica to switch over to"
    for member in cluster.members:
        if member.is_leader:
            continue
        if not member.api_url:
            return f"{member.name} publishes no REST API URL"
        if not streaming.get(member.name, False):
            return f"{member.name} is not streaming from the primary (state {member.state})"
        lag = _lag(member)
        if lag is None:
            return f"{member.name}'s replication lag is unknown"
        if lag > max_lag:
            return f"{member.name} lags {lag} bytes behind the primary (more than {max_lag})"
    return None


def switchover_candidate(cluster: ClusterView, exclude: str) -> MemberView | None:
    """The best replica to hand the primary role to: not tagged nofailover, a synchronous/quorum
    standby first (in synchronous mode only those may take over), then the least lag, then name."""
    eligible = [m for m in cluster.members
                if not m.is_leader and m.name != exclude and not _truthy(m.tags.get("nofailover"))]
    if not eligible:
        return None

    def key(member: MemberView) -> tuple[int, int, str]:
        lag = _lag(member)
        return (0 if member.role in STANDBY_ROLES else 1, lag if lag is not None else 1 << 62, member.name)

    return min(eligible, key=key)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"))
