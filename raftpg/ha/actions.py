"""What the core (decide() and step()) asks the shell to do. Each action carries the reason that is logged with it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    reason: str


@dataclass(frozen=True)
class Idle(Action):
    """Nothing to do this cycle; the reason says what we are waiting for."""

    warning: bool = False


@dataclass(frozen=True)
class AcquireLease(Action):
    """Compare-and-set on (version, revision): fails if anything changed since we looked."""

    expected_version: int
    expected_revision: int
    bootstrapping: bool = False


@dataclass(frozen=True)
class RenewLease(Action):
    clear_bootstrapping: bool = False


@dataclass(frozen=True)
class ReleaseLease(Action):
    pass


@dataclass(frozen=True)
class Bootstrap(Action):
    """initdb (or adopt an existing data directory), start as primary, record the system id."""

    existing_data: bool = False


@dataclass(frozen=True)
class Clone(Action):
    source: str  # member to take the base backup from


@dataclass(frozen=True)
class StartPrimary(Action):
    """Start PostgreSQL without standby.signal; only ever emitted while we hold the lease."""


@dataclass(frozen=True)
class StartStandby(Action):
    """Done once the standby is consistent, or after `ready_within` seconds with it still recovering:
    the WAL it needs may be gone, so the loop goes on and watches it (core._recovering_start)."""

    upstream: str | None  # None: start in recovery without streaming (to learn our own position)
    ready_within: float


@dataclass(frozen=True)
class Promote(Action):
    """Rule 5 first: `reports_needed` of the `witnesses` (sync members we counted on) stop and report."""

    witnesses: frozenset[str] = frozenset()
    reports_needed: int = 0


@dataclass(frozen=True)
class Demote(Action):
    """Stop a primary that must not be one (or a stuck standby); it comes back as a standby later."""

    immediate: bool = True
    then_rewind: bool = False


@dataclass(frozen=True)
class Follow(Action):
    upstream: str


@dataclass(frozen=True)
class Rewind(Action):
    source: str


@dataclass(frozen=True)
class MoveDataAside(Action):
    pass


@dataclass(frozen=True)
class EnsureSlots(Action):
    """Physical slots on the primary: one per other member, plus the configured permanent ones."""

    members: frozenset[str]
    permanent: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SetRaftSync(Action):
    """Publish the synchronous set in Raft (holder-conditioned)."""

    members: frozenset[str]
    quorum: int


@dataclass(frozen=True)
class SetPostgresSync(Action):
    """Set synchronous_standby_names; `members` None blocks every commit."""

    members: frozenset[str] | None
    quorum: int


@dataclass(frozen=True)
class RemoveMember(Action):
    """Forget a member gone longer than member_slots_ttl (its slot is dropped with it)."""

    name: str


@dataclass(frozen=True)
class Switchover(Action):
    """Rule 4: stop, check the candidate has our shutdown checkpoint, hand the lease over."""

    candidate: str
    request_id: str


@dataclass(frozen=True)
class ClearFailover(Action):
    request_id: str


@dataclass(frozen=True)
class ApplyConfig(Action):
    """Reload PostgreSQL with the parameters of dynamic configuration `version`."""

    version: int


@dataclass(frozen=True)
class ReloadPostgres(Action):
    """An operator's reload: the configuration files again, keeping the upstream."""


@dataclass(frozen=True)
class RestartPostgres(Action):
    """An operator's restart: a primary in place on its own timeline, or a standby of `upstream`."""

    primary: bool
    upstream: str | None = None


@dataclass(frozen=True)
class Reinitialize(Action):
    """An operator's reinit: stop PostgreSQL and move the data directory aside; the next cycles re-clone."""


@dataclass(frozen=True)
class StopPostgres(Action):
    """Clean stop at shutdown (fast); `release_lease` for a primary that could not hand over."""

    release_lease: bool
    role: str  # for the on_stop callback
