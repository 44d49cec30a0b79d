"""Stories of the HA core when PostgreSQL goes down: the holder restarting its primary in place
(rule 6), and a former primary rejoining with pg_rewind, its retries and its way out."""

from __future__ import annotations

import pytest

from raftpg.ha import actions as A
from raftpg.ha.memory import REWIND_RETRY_INTERVAL, Memory, PgState
from raftpg.ha.observations import (
    ActionFailed,
    Busy,
    CloneFinished,
    DataMovedAside,
    DecisionDue,
    DemoteStarted,
    Followed,
    Gathered,
    PrimaryStarted,
    PrimaryStarting,
    RewindFinished,
    StandbyStarted,
    StandbyStarting,
    Stopped,
    Stopping,
)
from raftpg.ha.views import LocalView, PgRole
from raftpg.postgres.datadir import DataDirState
from raftpg.postgres.rewind import RewindOutcome, RewindResult
from tests.unit.ha_views import NOW, cluster, holder, lease, local, member, run_story

pytestmark = pytest.mark.unit

ASYNC = dict(primary_start_timeout=10.0)


def test_restart_in_place_then_a_second_crash_times_from_the_second() -> None:
    the_cluster = cluster(**ASYNC)
    down = holder(role=PgRole.STOPPED, was_primary=True)
    memory, _ = run_story([
        (Gathered(the_cluster, down), NOW, []),
        (DecisionDue(the_cluster, down), NOW, [A.RenewLease, A.StartPrimary]),
        (PrimaryStarting("off"), NOW, []),
        (PrimaryStarted(), NOW + 1, []),
        (Gathered(the_cluster, holder(now=NOW + 1)), NOW + 1, []),  # running again: the timer stops
        (Gathered(the_cluster, holder(role=PgRole.STOPPED, was_primary=True, now=NOW + 8)), NOW + 8, []),
        (Gathered(the_cluster, holder(role=PgRole.STOPPED, was_primary=True, now=NOW + 9)), NOW + 9, []),
        (DecisionDue(the_cluster, holder(role=PgRole.STOPPED, was_primary=True, now=NOW + 17,
                                         lease_deadline=NOW + 20)), NOW + 17, [A.RenewLease, A.StartPrimary]),
        (PrimaryStarting("off"), NOW + 17, []),
        (ActionFailed(A.StartPrimary("")), NOW + 18, []),
        (DecisionDue(the_cluster, holder(role=PgRole.STOPPED, was_primary=True, now=NOW + 18,
                                         lease_deadline=NOW + 20)), NOW + 18, [A.ReleaseLease]),
    ])
    assert memory.pg_down_since == NOW + 8 and memory.state is PgState.STOPPED


def test_paused_time_does_not_count_and_another_holder_stops_the_timer() -> None:
    down = holder(role=PgRole.STOPPED)
    memory, _ = run_story([(Gathered(cluster(pause=True), down), NOW, [])])
    assert memory.pg_down_since is None
    memory, _ = run_story([(Gathered(cluster(lease("node2", "i-node2")), down), NOW, [])], Memory(pg_down_since=1.0))
    assert memory.pg_down_since is None


FORMER = cluster(members=[member("node1"), member("node2", role="primary", timeline=2)],
                 the_lease=lease("node2", "i-node2", version=7))
DIVERGED = holder(role=PgRole.STOPPED, was_primary=True, lease_deadline=None)  # node1, timeline 1


def rewind(outcome: RewindOutcome, output: str = "", at_version: int = 7) -> RewindFinished:
    return RewindFinished("node2", at_version, RewindResult(outcome, output))


UNREACHABLE = 'pg_rewind: error: connection to server at "node2" failed: Connection refused'
OWN_WAL = "pg_rewind: error: could not read WAL record at 0/4039AF8: record with incorrect prev-link"


def test_rewind_retries_then_hopeless_in_quorum_mode_re_clones() -> None:
    quorum = cluster(members=[member("node1"), member("node2", role="primary", timeline=2)],
                     the_lease=lease("node2", "i-node2", version=7), synchronous_mode="quorum")
    memory, _ = run_story([
        (DecisionDue(quorum, DIVERGED), NOW, [A.Rewind]),
        (Busy(PgState.REWINDING), NOW, []),
        (rewind(RewindOutcome.FAILED, UNREACHABLE), NOW + 1, []),
        (DecisionDue(quorum, local("node1", role=PgRole.STOPPED, was_primary=True, now=NOW + 2)), NOW + 2,
         [A.Idle]),  # an unreachable source is tried again after loop_wait (2 s)
        (DecisionDue(quorum, local("node1", role=PgRole.STOPPED, was_primary=True, now=NOW + 3)), NOW + 3,
         [A.Rewind]),
        (rewind(RewindOutcome.FAILED, OWN_WAL), NOW + 4, []),
        (DecisionDue(quorum, local("node1", role=PgRole.STOPPED, was_primary=True, now=NOW + 5)), NOW + 5,
         [A.MoveDataAside]),
        (DataMovedAside(), NOW + 5, []),
        (DecisionDue(quorum, local("node1", role=PgRole.STOPPED, data_dir=DataDirState.EMPTY, now=NOW + 6)),
         NOW + 6, [A.Clone]),
        (Busy(PgState.CREATING_REPLICA), NOW + 6, []),
        (CloneFinished(), NOW + 30, []),
    ])
    assert memory.rewind_failure is None and memory.state is PgState.STOPPED


def test_a_failed_rewind_waits_the_long_interval_unless_the_lease_changes() -> None:
    later = NOW + REWIND_RETRY_INTERVAL
    memory, _ = run_story([
        (DecisionDue(FORMER, DIVERGED), NOW, [A.Rewind]),
        (rewind(RewindOutcome.FAILED, "pg_rewind: error: something else"), NOW, []),
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED, was_primary=True, now=later - 1)), later - 1,
         [A.Idle]),
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED, was_primary=True, now=later)), later, [A.Rewind]),
    ])
    assert memory.rewind_failure is not None and not memory.rewind_failure.hopeless


def test_rewind_not_needed_loop_ends_in_a_re_clone() -> None:
    """pg_rewind found nothing to rewind from node2, yet the standby never became consistent (the
    WAL it needs is gone): it is stopped to rewind again, and then moved aside instead."""
    memory, actions = run_story([
        (DecisionDue(FORMER, DIVERGED), NOW, [A.Rewind]),
        (rewind(RewindOutcome.NOT_NEEDED, "pg_rewind: no rewind required"), NOW, []),
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED, was_primary=True)), NOW, [A.StartStandby]),
        (StandbyStarting(), NOW, []),
        (StandbyStarted("node2", recovering=True), NOW + 2, []),
    ])
    assert memory.rewound and memory.rewind_not_needed_from == "node2" and memory.upstream == "node2"
    assert memory.standby_recovering and memory.state is PgState.STARTING  # published "starting"
    recovering = local("node1", role=PgRole.UNKNOWN, standby_mode=True, upstream="node2", now=NOW + 2)
    stuck = local("node1", role=PgRole.UNKNOWN, standby_mode=True, upstream="node2", now=NOW + 13)
    memory, actions = run_story([
        (Gathered(FORMER, recovering), NOW + 2, []),
        (DecisionDue(FORMER, recovering), NOW + 2, [A.Idle]),
        (Gathered(FORMER, stuck), NOW + 13, []),
        (DecisionDue(FORMER, stuck), NOW + 13, [A.Demote]),  # not streaming for more than ttl (10 s)
        (DemoteStarted(then_rewind=True), NOW + 13, []),
        (Stopping(), NOW + 13, []),
        (Stopped(), NOW + 14, []),
        (Gathered(FORMER, local("node1", role=PgRole.STOPPED, now=NOW + 14)), NOW + 14, []),
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED, now=NOW + 14)), NOW + 14, [A.MoveDataAside]),
    ], memory)
    assert memory.needs_rewind and memory.upstream is None and "nothing to rewind" in actions[0].reason
    assert not memory.standby_recovering


def test_a_standby_start_waits_only_retry_timeout_for_consistency() -> None:
    """chaos seed 200 (2026-12-06 04:55:57): `pg_ctl start -w` waited 60 s for a standby whose WAL was
    gone, and the loop with it. A standby start waits retry_timeout, the holder's as long as rule 6
    gives its PostgreSQL; then it goes on with the standby still recovering."""
    _, actions = run_story([(DecisionDue(FORMER, local("node1", role=PgRole.STOPPED)), NOW, [A.StartStandby])])
    assert actions[0].ready_within == FORMER.config.retry_timeout  # type: ignore[attr-defined]
    open_lease = cluster(members=list(FORMER.members.values()), the_lease=lease(None, None))
    _, actions = run_story([(DecisionDue(open_lease, local("node1", role=PgRole.STOPPED)), NOW, [A.StartStandby])])
    assert actions[0].ready_within == FORMER.config.retry_timeout  # type: ignore[attr-defined]
    for the_cluster, wait in ((cluster(ttl=10.0, primary_start_timeout=3.0), 10.0),
                              (cluster(ttl=10.0, primary_start_timeout=25.0), 25.0)):
        _, actions = run_story([(DecisionDue(the_cluster, holder(role=PgRole.STOPPED)), NOW,
                                 [A.RenewLease, A.StartStandby])])
        assert actions[1].ready_within == wait  # type: ignore[attr-defined]


def test_a_recovering_standby_that_streams_is_never_stuck() -> None:
    """Its WAL receiver's title says WAL arrives (PostgresInstance.status): slow to become consistent
    after a rewind is not the WAL being gone, however long it takes."""
    def streaming(at: float) -> LocalView:
        return local("node1", role=PgRole.UNKNOWN, standby_mode=True, upstream="node2", streaming=True, now=at)

    memory, _ = run_story([
        (StandbyStarted("node2", recovering=True), NOW, []),
        (Gathered(FORMER, streaming(NOW + 1)), NOW + 1, []),
        (Gathered(FORMER, streaming(NOW + 40)), NOW + 40, []),
        (DecisionDue(FORMER, streaming(NOW + 40)), NOW + 40, [A.Idle]),
    ], Memory(rewind_not_needed_from="node2", rewound=True))
    assert memory.not_streaming_since is None and memory.rewind_not_needed_from is None
    assert memory.standby_recovering


def test_a_standby_left_recovering_that_becomes_consistent_runs() -> None:
    memory, _ = run_story([
        (StandbyStarting(), NOW, []),
        (StandbyStarted("node2", recovering=True), NOW + 2, []),
        (Gathered(FORMER, local("node1", role=PgRole.UNKNOWN, standby_mode=True, upstream="node2")), NOW + 2, []),
        (Gathered(FORMER, local("node1", upstream="node2", streaming=True)), NOW + 3, []),
        (Gathered(FORMER, local("node1", role=PgRole.STOPPED)), NOW + 9, []),  # a later crash: a plain restart
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED, now=NOW + 9)), NOW + 9, [A.StartStandby]),
    ])
    assert not memory.standby_recovering and not memory.needs_rewind


def test_a_standby_that_dies_before_it_is_consistent_failed_to_start() -> None:
    """As a start that fails at once (ActionFailed): its timeline is compared with the holder's."""
    memory, _ = run_story([
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED)), NOW, [A.StartStandby]),
        (StandbyStarting(), NOW, []),
        (StandbyStarted("node2", recovering=True), NOW + 2, []),
        (Gathered(FORMER, local("node1", role=PgRole.UNKNOWN, standby_mode=True, upstream="node2")), NOW + 2, []),
        (Gathered(FORMER, local("node1", role=PgRole.STOPPED, now=NOW + 3)), NOW + 3, []),
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED, now=NOW + 3)), NOW + 3, [A.Rewind]),
    ])
    assert memory.needs_rewind and memory.state is PgState.STOPPED and memory.upstream is None
    assert not memory.standby_recovering


def test_a_recovering_standby_we_stop_ourselves_did_not_fail_to_start() -> None:
    memory, _ = run_story([
        (StandbyStarted("node2", recovering=True), NOW, []),
        (Stopping(), NOW + 1, []),
        (Stopped(), NOW + 1, []),
        (Gathered(FORMER, local("node1", role=PgRole.STOPPED, now=NOW + 1)), NOW + 1, []),
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED, now=NOW + 1)), NOW + 1, [A.StartStandby]),
    ])
    assert not memory.needs_rewind and not memory.standby_recovering


def test_a_standby_that_streams_again_forgets_the_not_needed_verdict() -> None:
    streaming = local("node1", streaming=True, upstream="node2")
    memory, _ = run_story([(Gathered(FORMER, streaming), NOW, [])],
                          Memory(rewind_not_needed_from="node2", not_streaming_since=NOW - 30))
    assert memory.rewind_not_needed_from is None and memory.not_streaming_since is None


def test_an_interrupted_rewind_moves_the_data_directory_aside() -> None:
    run_story([(DecisionDue(FORMER, local("node1", role=PgRole.STOPPED, rewind_interrupted=True)), NOW,
                [A.MoveDataAside])])


def test_a_standby_that_failed_to_start_is_rewound_if_its_timeline_differs() -> None:
    memory, _ = run_story([
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED)), NOW, [A.StartStandby]),
        (StandbyStarting(), NOW, []),
        (ActionFailed(A.StartStandby("", "node2", 2.0)), NOW + 1, []),
        (DecisionDue(FORMER, local("node1", role=PgRole.STOPPED, now=NOW + 1)), NOW + 1, [A.Rewind]),
    ])
    assert memory.needs_rewind and memory.state is PgState.STOPPED


def test_a_failure_after_postgres_settled_keeps_its_state() -> None:
    memory, _ = run_story([(ActionFailed(A.Follow("", "node2")), NOW, [])], Memory(state=PgState.RUNNING))
    assert memory.state is PgState.RUNNING and not memory.needs_rewind


def test_follow_remembers_the_new_upstream() -> None:
    memory, _ = run_story([(Followed("node3"), NOW, [])], Memory(upstream="node2"))
    assert memory.upstream == "node3"
