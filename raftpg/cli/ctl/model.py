"""Typed views of the REST API's JSON for `raftpg ctl`, built tolerantly.

The API may be an older or newer raftpg, or Patroni itself: a missing or oddly typed field
becomes None here, so one unexpected answer never turns `ctl list` into a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from raftpg.postgres.lsn import format_lsn

# Only the lease holder is shown as "leader"; a member that still publishes "primary" without
# the lease (an old primary being demoted) is not the leader and must not be mistaken for it.
LEADER_ROLES = ("leader", "standby_leader")


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _lsn_text(value: Any) -> str | None:
    """PostgreSQL's X/X text for an integer LSN; text LSNs pass through."""
    if isinstance(value, int) and not isinstance(value, bool):
        return format_lsn(value)
    return _str(value)


def _lag(value: Any) -> int | str | None:
    """Bytes behind, "unknown" (the API could not tell), or None (not reported)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None if value is None else str(value)


def api_base(api_url: str | None) -> str | None:
    """Members publish their /patroni URL (as Patroni does); requests go to the base URL."""
    if not api_url:
        return None
    url = api_url.rstrip("/")
    return url[: -len("/patroni")] if url.endswith("/patroni") else url


@dataclass(frozen=True)
class MemberView:
    name: str
    role: str
    state: str
    host: str | None = None
    port: int | None = None
    api_url: str | None = None  # base URL of the member's REST API
    timeline: int | None = None
    receive_lsn: str | None = None
    receive_lag: int | str | None = None
    replay_lsn: str | None = None
    replay_lag: int | str | None = None
    pending_restart: bool = False
    needs_reinit: str | None = None  # why it cannot rejoin on its own, and the command that fixes it
    scheduled_restart: str | None = None
    tags: Mapping[str, Any] = field(default_factory=_empty)

    @property
    def is_leader(self) -> bool:
        return self.role in LEADER_ROLES

    @property
    def host_port(self) -> str:
        if self.host is None:
            return ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> MemberView:
        scheduled = data.get("scheduled_restart")
        if isinstance(scheduled, Mapping):
            scheduled = scheduled.get("schedule")
        tags = data.get("tags")
        return MemberView(
            name=str(data.get("name", "?")),
            role=str(data.get("role") or "unknown"),
            state=str(data.get("state") or "unknown"),
            host=_str(data.get("host")),
            port=_int(data.get("port")),
            api_url=api_base(_str(data.get("api_url"))),
            timeline=_int(data.get("timeline")),
            receive_lsn=_lsn_text(data.get("receive_lsn")),
            receive_lag=_lag(data.get("receive_lag")),
            replay_lsn=_lsn_text(data.get("replay_lsn", data.get("lsn"))),
            replay_lag=_lag(data.get("replay_lag", data.get("lag"))),
            pending_restart=bool(data.get("pending_restart")),
            needs_reinit=_str(data.get("needs_reinit")) or None,
            scheduled_restart=_str(scheduled),
            tags=MappingProxyType(dict(tags)) if isinstance(tags, Mapping) else _empty(),
        )


@dataclass(frozen=True)
class ClusterView:
    scope: str
    members: tuple[MemberView, ...]
    paused: bool = False
    scheduled_switchover: Mapping[str, Any] | None = None
    system_id: str | None = None

    @property
    def leader(self) -> MemberView | None:
        return next((m for m in self.members if m.is_leader), None)

    def member(self, name: str) -> MemberView | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    @staticmethod
    def from_json(data: Any, scope: str | None = None, system_id: str | None = None) -> ClusterView:
        doc: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        raw_members = doc.get("members")
        members = tuple(
            MemberView.from_json(m) for m in (raw_members if isinstance(raw_members, list) else [])
            if isinstance(m, Mapping)
        )
        scheduled = doc.get("scheduled_switchover")
        return ClusterView(
            scope=str(doc.get("scope") or scope or "?"),
            members=members,
            paused=bool(doc.get("pause")),
            scheduled_switchover=MappingProxyType(dict(scheduled)) if isinstance(scheduled, Mapping) else None,
            system_id=system_id,
        )


@dataclass(frozen=True)
class ConnectionProblem:
    """A member that cannot be talked to for a reason an operator must fix (TLS, authentication),
    as seen by other members (their /patroni) or by ctl itself."""

    member: str
    text: str
    seen_by: tuple[str, ...]


def peer_problems(status: Mapping[str, Any]) -> dict[str, str]:
    """name -> "KIND: reason" from a member's /patroni (raftpg.peer_problems); tolerant of junk."""
    own = status.get("raftpg")
    found = own.get("peer_problems") if isinstance(own, Mapping) else None
    if not isinstance(found, Mapping):
        return {}
    return {str(name): f"{p.get('kind', '?')}: {p.get('reason', '?')}"
            for name, p in found.items() if isinstance(p, Mapping)}


def group_problems(sightings: list[tuple[str, str, str]]) -> tuple[ConnectionProblem, ...]:
    """(member, text, observer) sightings, one ConnectionProblem per member and text."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for member, text, observer in sightings:
        grouped.setdefault((member, text), []).append(observer)
    return tuple(ConnectionProblem(member, text, tuple(sorted(set(observers))))
                 for (member, text), observers in sorted(grouped.items()))


@dataclass(frozen=True)
class HistoryEntry:
    timeline: int | None
    lsn: Any
    reason: str
    timestamp: str | None
    new_leader: str | None

    @staticmethod
    def from_json(row: Any) -> HistoryEntry:
        """Patroni's [timeline, lsn, reason, timestamp, new_leader]; short rows are padded."""
        items = list(row) if isinstance(row, list | tuple) else []
        items += [None] * (5 - len(items))
        return HistoryEntry(_int(items[0]), items[1], str(items[2] or ""), _str(items[3]), _str(items[4]))
