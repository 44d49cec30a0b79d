"""Read-only views of the replicated state, as the layers above consume them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Lease:
    holder: str | None
    instance_id: str | None
    version: int
    revision: int
    ttl: float
    lsn_at_handover: int | None
    bootstrapping: bool
    applied_at: float
    """Boottime at which THIS replica applied the last change; never compared across nodes."""

    def expires_at(self) -> float:
        return self.applied_at + self.ttl

    def expired(self, now: float) -> bool:
        return self.holder is None or now >= self.expires_at()


@dataclass(frozen=True)
class Snapshot:
    """The local replica's state at one instant. Plain copies: the caller may keep or serialise them."""

    scope: str | None
    initialize: str | None
    lease: Lease
    members: Mapping[str, Mapping[str, Any]]
    member_applied_at: Mapping[str, float]
    config: Mapping[str, Any]
    config_version: int
    failover: Mapping[str, Any] | None
    failover_dropped: Mapping[str, Any] | None
    """{request_id, reason} of the last request the leader dropped without carrying it out."""
    sync: Mapping[str, Any]
    history: tuple[Mapping[str, Any], ...]
    last_applied: int
    operations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """name -> {revision, record}: operator operations in progress (state.set_operation)."""


@dataclass(frozen=True)
class RaftStatus:
    self_addr: str
    leader: str | None
    is_leader: bool
    term: int
    commit_index: int
    last_applied: int
    has_quorum: bool
    partners: Mapping[str, bool]
    """Partner address -> connected."""
    tick_thread_alive: bool
    journal_bytes: int
    log_len: int
