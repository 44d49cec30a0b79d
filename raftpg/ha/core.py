"""The HA core: step(memory, observation, now) -> (memory, actions), pure and deterministic.

Everything the node remembers between cycles is in Memory; everything it learns arrives as an
observation (observations.py): the gathered views, an operator's request, each action's outcome.
The shell (loop.py, executor.py) gathers, performs the actions and reports; it reads no clock for
decisions: `now` (boottime) is an argument. decide.py and candidates.py hold the decision tables.

An outcome reported in the middle of an action (a stop-and-report result, a switchover's
checkpoint, a failed hand-over) is answered with no action, to go on, or with the actions that
replace the rest of it; the action then counts as failed.
"""

from __future__ import annotations

from dataclasses import replace

from raftpg.config import DynamicConfig
from raftpg.ha.actions import (
    Action,
    ApplyConfig,
    ClearFailover,
    Idle,
    Promote,
    Reinitialize,
    ReleaseLease,
    ReloadPostgres,
    RestartPostgres,
    StartPrimary,
    StartStandby,
    StopPostgres,
    Switchover,
)
from raftpg.ha.candidates import best_switchover_candidate
from raftpg.ha.decide import decide, sync_candidates
from raftpg.ha.memory import Memory, PgState, RewindFailure
from raftpg.ha.observations import (
    ActionFailed,
    BootstrapDone,
    BootstrapFailed,
    BootstrapStarting,
    Busy,
    CandidateCaughtUp,
    CloneFinished,
    ConfigApplied,
    CycleStarted,
    DataMovedAside,
    DecisionDue,
    DemoteStarted,
    Followed,
    Gathered,
    HandOverFailed,
    LeaseAcquired,
    Observation,
    OperatorRequest,
    PrimaryStarted,
    PrimaryStarting,
    Promoted,
    PromotionStarting,
    Reinitialized,
    RequestKind,
    RestartScheduled,
    RewindFinished,
    ShutdownRequested,
    StandbyStarted,
    StandbyStarting,
    StopAndReportResult,
    Stopped,
    Stopping,
    SwitchoverStopped,
    SyncApplied,
    SyncRequested,
    WitnessReport,
)
from raftpg.ha.sync import SyncSet, standby_names, sync_wait_since
from raftpg.ha.views import ClusterView, LocalView, PgRole
from raftpg.postgres.controldata import ClusterState
from raftpg.postgres.datadir import DataDirState
from raftpg.postgres.rewind import RewindOutcome

SHUTDOWN_REQUEST = "shutdown"  # request id of the hand-over at shutdown


def step(memory: Memory, observation: Observation, now: float) -> tuple[Memory, list[Action]]:
    """What the node remembers after `observation` at `now` (boottime), and what to do about it."""
    match observation:
        case CycleStarted():
            return _cycle_started(_gathered(memory, observation, now), observation, now)
        case Gathered():
            return _gathered(memory, observation, now), []
        case DecisionDue():
            return _decision_due(memory, observation, now)
        case OperatorRequest():
            return memory, _operator_request(memory, observation.kind, observation.local, now)
        case RestartScheduled():
            return replace(memory, scheduled_restart=observation.at), []
        case ShutdownRequested():
            return memory, _shutdown(observation)
        case HandOverFailed():
            return memory, [StopPostgres("the hand-over at shutdown did not happen: stopping PostgreSQL and "
                                         "releasing the lease", release_lease=True, role=PgRole.PRIMARY.value)]
        case StopAndReportResult():
            cleared = replace(memory, promotion_witnesses=frozenset(), promotion_reports_needed=0)
            return cleared, _promotion_verdict(observation)
        case SwitchoverStopped():
            return memory, _after_switchover_stop(observation)
        case CandidateCaughtUp():
            return memory, _after_catch_up(observation)
        case RewindFinished():
            return _rewound(memory, observation, now), []
    return _lifecycle(memory, observation), []


def _lifecycle(memory: Memory, observation: Observation) -> Memory:
    """Outcomes that only change what the node remembers about its PostgreSQL."""
    match observation:
        case StandbyStarting() | BootstrapStarting():
            return replace(memory, state=PgState.STARTING, sync_names="", standby_recovering=False)
        case StandbyStarted():
            # Still recovering, it stays "starting" until seen consistent (_gathered).
            return replace(memory, state=PgState.STARTING if observation.recovering else PgState.RUNNING,
                           upstream=observation.upstream, standby_recovering=observation.recovering)
        case PrimaryStarting():
            return replace(_commits_blocked(memory, observation.synchronous_mode), state=PgState.STARTING)
        case PromotionStarting():
            return _commits_blocked(memory, observation.synchronous_mode)
        case PrimaryStarted():
            return replace(memory, state=PgState.RUNNING, upstream=None, needs_rewind=False)
        case Promoted():
            return replace(memory, upstream=None, needs_rewind=False)
        case BootstrapDone():
            return replace(memory, state=PgState.RUNNING)
        case BootstrapFailed():
            return replace(memory, bootstrap_failed=True)
        case Stopping():
            return replace(memory, state=PgState.STOPPING, standby_recovering=False)
        case Stopped():
            return replace(memory, state=PgState.STOPPED, upstream=None)
        case Busy():
            return replace(memory, state=observation.state)
        case CloneFinished():
            return replace(memory, state=PgState.STOPPED)
        case DemoteStarted():
            return replace(memory, needs_rewind=memory.needs_rewind or observation.then_rewind)
        case Followed():
            return replace(memory, upstream=observation.upstream)
        case DataMovedAside():
            return replace(memory, rewind_failure=None, bootstrap_failed=False)
        case Reinitialized():
            return replace(memory, rewind_failure=None)
        case LeaseAcquired():
            return _lease_acquired(memory, observation)
        case SyncRequested():
            sync = None if observation.members is None else SyncSet(observation.members, observation.quorum)
            return replace(memory, sync_names=standby_names(observation.synchronous_mode, sync))
        case SyncApplied():
            return replace(memory, sync_switch_lsn=observation.lsn)
        case ConfigApplied():
            return replace(memory, config_applied=observation.version)
        case ActionFailed():
            needs_rewind = memory.needs_rewind or isinstance(observation.action, StartStandby)
            unsettled = memory.state in (PgState.STARTING, PgState.STOPPING)
            return replace(memory, needs_rewind=needs_rewind, state=PgState.STOPPED if unsettled else memory.state)
    raise AssertionError(f"the core has no rule for {observation!r}")


def _commits_blocked(memory: Memory, mode: str) -> Memory:
    """A primary we start or promote acknowledges nothing until its standbys are in Raft (rule 5),
    and its data directory is a primary's from here on: never skip pg_rewind again."""
    names = standby_names(mode, None) if mode != "off" else ""
    return replace(memory, sync_names=names, sync_switch_lsn=None, rewound=False, rewind_not_needed_from=None)


def _lease_acquired(memory: Memory, acquired: LeaseAcquired) -> Memory:
    """Before promoting, the sync members we counted on must stop and report: n - quorum of them,
    which with ourselves makes the n - quorum + 1 known members candidates.py asked for."""
    sync = acquired.sync
    if acquired.running_primary:
        return memory  # reclaimed by a primary that runs on: nothing to promote
    if sync.quorum <= 0 or not sync.members:
        return replace(memory, promotion_witnesses=frozenset(), promotion_reports_needed=0)
    return replace(memory, promotion_witnesses=sync.members - {acquired.name},
                   promotion_reports_needed=max(0, len(sync.members) - sync.quorum))


def _rewound(memory: Memory, finished: RewindFinished, now: float) -> Memory:
    result = finished.result
    memory = replace(memory, state=PgState.STOPPED)
    if not result.ok:
        failure = RewindFailure(finished.source, finished.lease_version, now, result.source_unreachable,
                                result.own_wal_unreadable)
        return replace(memory, rewind_failure=failure)
    not_needed = finished.source if result.outcome is RewindOutcome.NOT_NEEDED else None
    return replace(memory, rewind_failure=None, rewound=True, needs_rewind=False, rewind_not_needed_from=not_needed)


# --- gathering and deciding ----------------------------------------------------------------------
def _gathered(memory: Memory, gathered: Gathered, now: float) -> Memory:
    """The timers: PostgreSQL down while we hold the lease (rule 6), a standby not streaming; and
    how a standby started still recovering ended."""
    local, cluster = gathered.local, gathered.cluster
    memory = _recovering_start(memory, local.role)
    lease = cluster.lease
    ours = lease.holder == local.name and lease.instance_id == local.instance_id
    down_since = memory.pg_down_since
    if local.role is PgRole.PRIMARY or not ours or cluster.paused:
        down_since = None  # paused time does not count towards primary_start_timeout
    elif down_since is None:
        down_since = now
    sync_names = memory.sync_names
    if local.role is PgRole.PRIMARY and sync_names is None:
        sync_names = gathered.standby_names or ""  # adopted from a primary we did not start
    recovering = local.role is PgRole.UNKNOWN and local.standby_mode
    not_streaming = memory.not_streaming_since
    if not (local.role is PgRole.REPLICA or recovering) or local.streaming:
        not_streaming = None
    elif not_streaming is None:
        not_streaming = now
    # A standby streams again: the rewind that found nothing to do led to a working standby.
    not_needed = None if local.streaming else memory.rewind_not_needed_from
    return replace(memory, pg_down_since=down_since, sync_names=sync_names, not_streaming_since=not_streaming,
                   rewind_not_needed_from=not_needed)


def _recovering_start(memory: Memory, role: PgRole) -> Memory:
    """A standby left recovering by its start (StandbyStarted.recovering) that answers queries now
    reached a consistent state; one whose postmaster is gone before that failed to start, exactly
    as a start that fails at once (ActionFailed): rewind if its timeline differs from the holder's."""
    if not memory.standby_recovering or role is PgRole.UNKNOWN:
        return memory
    if role is PgRole.STOPPED:
        return replace(memory, standby_recovering=False, state=PgState.STOPPED, upstream=None, needs_rewind=True)
    return replace(memory, standby_recovering=False, state=PgState.RUNNING)


def _cycle_started(memory: Memory, started: CycleStarted, now: float) -> tuple[Memory, list[Action]]:
    actions: list[Action] = []
    if started.pg_running and started.config_version != memory.config_applied:
        actions.append(ApplyConfig(f"dynamic configuration version {started.config_version}",
                                   started.config_version))
    due = memory.scheduled_restart
    if due is not None and started.local.wall_now >= due:
        memory = replace(memory, scheduled_restart=None)
        actions.extend(_operator_request(memory, RequestKind.RESTART, started.local, now))
    return memory, actions


def complete(memory: Memory, cluster: ClusterView, local: LocalView) -> LocalView:
    """The local view with what this node remembers added to the facts the shell gathered."""
    config = cluster.config
    failure = memory.rewind_failure
    stuck = memory.not_streaming_since is not None and local.now - memory.not_streaming_since > config.ttl
    return replace(
        local,
        upstream=memory.upstream,
        was_primary=local.was_primary and not memory.rewound,
        pg_down_since=memory.pg_down_since,
        rewind_failed=failure is not None and failure.blocks_retry(cluster.lease.holder, cluster.lease.version,
                                                                   local.now, config.loop_wait, config.ttl),
        rewind_hopeless=failure is not None and failure.hopeless,
        bootstrap_failed=memory.bootstrap_failed,
        sync_switch_lsn=memory.sync_switch_lsn,
        sync_waiting_since=memory.sync_waiting_since,
        needs_rewind=memory.needs_rewind,
        rewind_not_needed_from=memory.rewind_not_needed_from,
        standby_stuck=stuck,
    )


def _decision_due(memory: Memory, due: DecisionDue, now: float) -> tuple[Memory, list[Action]]:
    cluster, local = due.cluster, due.local
    waiting = sync_wait_since(memory.sync_waiting_since,
                              primary=local.role is PgRole.PRIMARY and local.holds_lease(cluster.lease),
                              has_candidates=bool(sync_candidates(cluster, local)), now=now)
    memory = replace(memory, sync_waiting_since=waiting)
    actions = decide(cluster, complete(memory, cluster, local))
    witnesses = frozenset(name for name in memory.promotion_witnesses if name in cluster.members)
    return memory, [replace(a, witnesses=witnesses, reports_needed=memory.promotion_reports_needed)
                    if isinstance(a, Promote) else a for a in actions]


# --- verdicts ------------------------------------------------------------------------------------
def witness_stopped(report: WitnessReport, name: str) -> bool:
    """It no longer streams from the old primary: it follows us already, or stopped streaming."""
    return report.upstream in (None, name) or report.role != "replica"


def _promotion_verdict(result: StopAndReportResult) -> list[Action]:
    """Rule 5: the sync members we counted on stopped streaming from the old primary and reported
    how far they got; a frozen old primary can then collect no more acknowledgements, and none of
    them may be ahead of us. Else the lease goes back."""
    if not result.witnesses or result.needed == 0:
        return []
    for report in sorted(result.reports, key=lambda r: r.name):
        if report.lsn is not None and report.lsn > result.own_lsn:
            return [ReleaseLease(f"not promoting: synchronous member {report.name} is ahead of us "
                                 f"({report.lsn} > {result.own_lsn}); releasing the lease")]
    stopped = {r.name for r in result.reports if r.name in result.witnesses and witness_stopped(r, result.name)}
    if len(stopped) < result.needed:
        return [ReleaseLease(f"not promoting: only {len(stopped)} of the {result.needed} synchronous members we "
                             "counted on stopped streaming from the old primary and reported (no answer from "
                             f"{sorted(result.witnesses - stopped)}); releasing the lease")]
    return []


def _after_switchover_stop(stopped: SwitchoverStopped) -> list[Action]:
    """Rule 4: only a clean shutdown makes the last checkpoint the end of the WAL to hand over."""
    if stopped.cluster_state is ClusterState.SHUT_DOWN:
        return []
    return [ClearFailover(f"switchover to {stopped.candidate} aborted: PostgreSQL did not shut down cleanly "
                          f"({stopped.cluster_state}), so its last checkpoint is not the end of its WAL",
                          stopped.request_id)]


def _after_catch_up(caught_up: CandidateCaughtUp) -> list[Action]:
    """A candidate that did not receive our shutdown checkpoint gets nothing; we go on as primary."""
    if caught_up.received:
        return []
    reason = (f"switchover to {caught_up.candidate} aborted: it did not receive our shutdown checkpoint "
              f"{caught_up.lsn}; restarting as primary")
    return [ClearFailover(reason, caught_up.request_id), StartPrimary(reason)]


def _operator_request(memory: Memory, kind: RequestKind, local: LocalView, now: float) -> list[Action]:
    """Restart, reload and reinitialize, asked for this node alone through the REST API."""
    if kind is RequestKind.RELOAD:
        return [ReloadPostgres("reload requested")]
    if kind is RequestKind.REINITIALIZE:
        if local.role is PgRole.PRIMARY:
            return []
        return [Reinitialize("reinitialize requested: moving the data directory aside to re-clone")]
    if local.role is PgRole.PRIMARY and local.lease_deadline is not None and now < local.lease_deadline:
        return [RestartPostgres("restart requested: restarting the primary in place", primary=True)]
    if local.role is PgRole.REPLICA:
        return [RestartPostgres("restart requested", primary=False, upstream=memory.upstream)]
    return []


def _shutdown(request: ShutdownRequested) -> list[Action]:
    """Clean stop: a primary hands over (rule 4) or stops and releases; a replica just stops.
    Paused, PostgreSQL is left running and the lease as it is (rolling upgrades)."""
    if request.cluster.paused:
        return [Idle("paused: leaving PostgreSQL running and the lease as it is")]
    if request.holds_lease and request.role == PgRole.PRIMARY.value:
        candidate = best_switchover_candidate(request.cluster, request.name, None)
        if candidate is not None:
            return [Switchover(f"shutting down: handing the lease over to {candidate}", candidate, SHUTDOWN_REQUEST)]
        return [StopPostgres("shutting down with no replica to hand over to: stopping PostgreSQL and releasing "
                             "the lease", release_lease=True, role=request.role)]
    return [StopPostgres("shutting down", release_lease=False, role=request.role)]


def needs_reinit(memory: Memory, local: LocalView, config: DynamicConfig, scope: str) -> str | None:
    """The operator's cue (decide._after_rewind_failure): a rewind that cannot succeed, where
    re-cloning on our own is not provably safe."""
    failure = memory.rewind_failure
    if (failure is None or not failure.hopeless or local.data_dir is not DataDirState.INITIALIZED
            or config.remove_data_directory_on_rewind_failure or config.synchronous_mode in ("on", "quorum")):
        return None
    return (f"pg_rewind from {failure.source} cannot succeed on this member's WAL, which may hold writes "
            f"acknowledged asynchronously; to re-clone it: raftpg ctl reinit {scope} {local.name}")
