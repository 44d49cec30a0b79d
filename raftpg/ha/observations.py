"""What the HA core learns: the gathered views, operator requests, and each action's outcome.

The shell builds one of these for everything that happens and feeds it to core.step(); an
outcome is reported at the moment it happens, also in the middle of a long action.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from raftpg.ha.actions import Action
from raftpg.ha.memory import PgState
from raftpg.ha.views import ClusterView, LocalView, SyncState
from raftpg.postgres.controldata import ClusterState
from raftpg.postgres.rewind import RewindResult


class RequestKind(enum.StrEnum):
    RESTART = "restart"
    RELOAD = "reload"
    REINITIALIZE = "reinitialize"


@dataclass(frozen=True)
class Observation:
    pass


# --- gathered ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gathered(Observation):
    """PostgreSQL as just read (at a cycle's start, and again after actions changed it). `local`
    carries facts only; the core adds what it remembers (core.complete)."""

    cluster: ClusterView
    local: LocalView
    standby_names: str | None = None  # PostgreSQL's synchronous_standby_names (as primary)


@dataclass(frozen=True)
class CycleStarted(Gathered):
    """The first gathering of a cycle: also the time for due scheduled work."""

    config_version: int = 0
    pg_running: bool = False


@dataclass(frozen=True)
class DecisionDue(Observation):
    """The views to decide on (re-read after publishing and serving requests, peers asked)."""

    cluster: ClusterView
    local: LocalView


@dataclass(frozen=True)
class OperatorRequest(Observation):
    kind: RequestKind
    local: LocalView


@dataclass(frozen=True)
class RestartScheduled(Observation):
    at: float | None  # wall clock; None cancels


@dataclass(frozen=True)
class ShutdownRequested(Observation):
    cluster: ClusterView
    name: str
    role: str  # as last published ("primary", "replica", ...)
    holds_lease: bool


# --- outcomes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionFailed(Observation):
    action: Action


@dataclass(frozen=True)
class LeaseAcquired(Observation):
    name: str
    running_primary: bool
    sync: SyncState  # the Raft sync record we took the lease under


@dataclass(frozen=True)
class Busy(Observation):
    """A long operation on the data directory began (initdb, base backup, pg_rewind)."""

    state: PgState


@dataclass(frozen=True)
class StandbyStarting(Observation):
    pass


@dataclass(frozen=True)
class StandbyStarted(Observation):
    upstream: str | None
    recovering: bool = False  # the postmaster runs but is not consistent yet (accepts no connections)


@dataclass(frozen=True)
class PrimaryStarting(Observation):
    synchronous_mode: str


@dataclass(frozen=True)
class PrimaryStarted(Observation):
    pass


@dataclass(frozen=True)
class PromotionStarting(Observation):
    synchronous_mode: str


@dataclass(frozen=True)
class Promoted(Observation):
    pass


@dataclass(frozen=True)
class Stopping(Observation):
    pass


@dataclass(frozen=True)
class Stopped(Observation):
    pass


@dataclass(frozen=True)
class DemoteStarted(Observation):
    then_rewind: bool


@dataclass(frozen=True)
class Followed(Observation):
    upstream: str


@dataclass(frozen=True)
class RewindFinished(Observation):
    source: str
    lease_version: int  # of the source's lease when it ran
    result: RewindResult


@dataclass(frozen=True)
class CloneFinished(Observation):
    pass


@dataclass(frozen=True)
class DataMovedAside(Observation):
    pass


@dataclass(frozen=True)
class Reinitialized(Observation):
    pass


@dataclass(frozen=True)
class BootstrapStarting(Observation):
    pass


@dataclass(frozen=True)
class BootstrapDone(Observation):
    pass


@dataclass(frozen=True)
class BootstrapFailed(Observation):
    pass


@dataclass(frozen=True)
class SyncRequested(Observation):
    """SetPostgresSync is under way: the core picks the synchronous_standby_names."""

    synchronous_mode: str
    members: frozenset[str] | None
    quorum: int


@dataclass(frozen=True)
class SyncApplied(Observation):
    lsn: int  # PostgreSQL's WAL position when the new setting was in effect


@dataclass(frozen=True)
class ConfigApplied(Observation):
    version: int


@dataclass(frozen=True)
class WitnessReport:
    """A synchronous member's answer while we wait to promote."""

    name: str
    lsn: int | None
    upstream: str | None
    role: str


@dataclass(frozen=True)
class StopAndReportResult(Observation):
    name: str  # ours
    own_lsn: int
    witnesses: frozenset[str]
    needed: int
    reports: tuple[WitnessReport, ...]  # the last answer of each witness that answered


@dataclass(frozen=True)
class SwitchoverStopped(Observation):
    """The old primary stopped (fast) for a switchover; pg_controldata says how."""

    candidate: str
    request_id: str
    cluster_state: ClusterState
    checkpoint_lsn: int


@dataclass(frozen=True)
class CandidateCaughtUp(Observation):
    candidate: str
    request_id: str
    lsn: int
    received: bool  # it reported at least `lsn` in time


@dataclass(frozen=True)
class HandOverFailed(Observation):
    """The hand-over at shutdown did not happen (failed, refused or timed out)."""
