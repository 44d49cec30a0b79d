"""The pure half of `raftpg ctl rolling-restart`: when to refuse, which replica takes over, and the
run's resumable state.

A member counts as restarted when its postmaster start time differs from the one recorded when
the run began: each member is compared with its own clock, so clock skew between hosts and
between ctl and the cluster cannot mark a member done (or not done) by mistake.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from raftpg.cli.ctl.model import ClusterView, MemberView

STANDBY_ROLES = ("sync_standby", "quorum_standby")
STATE_VERSION = 1


def _empty() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True)
class RunState:
    """What an interrupted run needs to continue: the primary it started from and every member's
    postmaster start time (Unix seconds, the member's own clock) before anything was restarted."""

    scope: str
    old_primary: str
    started: Mapping[str, float] = field(default_factory=_empty)
    daemons: Mapping[str, float] = field(default_factory=_empty)
    """With --daemon: each member's raftpg process start time (its /patroni raftpg.started_at)."""

    def done(self, name: str, start_time: float | None) -> bool:
        return _changed(self.started.get(name), start_time)

    def daemon_done(self, name: str, started_at: float | None) -> bool:
        return _changed(self.daemons.get(name), started_at)

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, "scope": self.scope, "old_primary": self.old_primary,
                           "started": dict(self.started), "daemons": dict(self.daemons)}, indent=2, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> RunState | None:
        """None for anything that is not a state this version wrote (it is then ignored)."""
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            return None
        started, daemons = doc.get("started"), doc.get("daemons", {})
        if not isinstance(started, dict) or not isinstance(daemons, dict) or not isinstance(doc.get("scope"), str) \
                or not isinstance(doc.get("old_primary"), str):
            return None
        try:
            times = {str(k): float(v) for k, v in started.items()}
            daemon_times = {str(k): float(v) for k, v in daemons.items()}
        except (TypeError, ValueError):
            return None
        return RunState(doc["scope"], doc["old_primary"], MappingProxyType(times), MappingProxyType(daemon_times))


def _changed(before: float | None, now: float | None) -> bool:
    return before is not None and now is not None and now != before


def default_state_path(scope: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "raftpg" / f"rolling-restart-{scope}.json"


def load_state(path: Path, scope: str) -> RunState | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    state = RunState.from_json(text)
    return state if state is not None and state.scope == scope else None


def save_state(path: Path, state: RunState) -> None:
    """Write-then-rename: an interruption leaves the old state or the new one, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.to_json(), encoding="utf-8")
    tmp.replace(path)


def _lag(member: MemberView) -> int | None:
    lag = member.replay_lag if member.replay_lag is not None else member.receive_lag
    return lag if isinstance(lag, int) else None


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
