"""Stories of the HA core around a hand-over (rule 4): switchover order and abort, the shutdown
hand-over, and the switchover target killed after the hand-over, before it promoted."""

from __future__ import annotations

import pytest

from raftpg.ha import actions as A
from raftpg.ha.core import SHUTDOWN_REQUEST
from raftpg.ha.memory import Memory, PgState
from raftpg.ha.observations import (
    CandidateCaughtUp,
    DecisionDue,
    Gathered,
    HandOverFailed,
    ShutdownRequested,
    StandbyStarted,
    StandbyStarting,
    SwitchoverStopped,
)
from raftpg.ha.views import FailoverRequest, PgRole
from raftpg.postgres.controldata import ClusterState
from tests.unit.ha_views import NOW, cluster, holder, lease, local, member, run_story

pytestmark = pytest.mark.unit

REQUEST = FailoverRequest("r1", leader="node1", candidate="node2")


def test_switchover_stops_checks_the_checkpoint_then_hands_over() -> None:
    _, last = run_story([
        (DecisionDue(cluster(failover=REQUEST), holder()), NOW, [A.RenewLease, A.EnsureSlots, A.Switchover]),
        (SwitchoverStopped("node2", "r1", ClusterState.SHUT_DOWN, 500), NOW, []),  # go on: wait for node2
        (CandidateCaughtUp("node2", "r1", 500, received=True), NOW, []),  # go on: hand the lease over
    ])
    assert last == []


def test_switchover_aborted_by_an_unclean_stop_keeps_postgres_down() -> None:
    _, actions = run_story([
        (SwitchoverStopped("node2", "r1", ClusterState.IN_PRODUCTION, 500), NOW, [A.ClearFailover]),
    ])
    clear = actions[0]
    assert isinstance(clear, A.ClearFailover) and clear.request_id == "r1"
    assert "did not shut down cleanly (in production)" in clear.reason


def test_switchover_aborted_when_the_candidate_lags_restarts_as_primary() -> None:
    _, actions = run_story([
        (SwitchoverStopped("node2", "r1", ClusterState.SHUT_DOWN, 500), NOW, []),
        (CandidateCaughtUp("node2", "r1", 500, received=False), NOW, [A.ClearFailover, A.StartPrimary]),
    ])
    assert "did not receive our shutdown checkpoint 500" in actions[0].reason


@pytest.mark.parametrize(
    ("request_", "expected", "candidate"),
    [
        (ShutdownRequested(cluster(members=[member("node1", role="primary"), member("node2", lsn=150),
                                            member("node3")]), "node1", "primary", holds_lease=True),
         [A.Switchover], "node2"),  # the most advanced replica
        (ShutdownRequested(cluster(members=[member("node1", role="primary"), member("node2", state="stopped")]),
                           "node1", "primary", holds_lease=True), [A.StopPostgres], None),
        (ShutdownRequested(cluster(), "node1", "primary", holds_lease=False), [A.StopPostgres], None),
        (ShutdownRequested(cluster(), "node2", "replica", holds_lease=False), [A.StopPostgres], None),
        (ShutdownRequested(cluster(pause=True), "node1", "primary", holds_lease=True), [A.Idle], None),
    ],
)
def test_shutdown_hand_over_candidate(request_: ShutdownRequested, expected: list[type], candidate: str | None) -> None:
    _, actions = run_story([(request_, NOW, expected)])
    match actions[0]:
        case A.Switchover():
            assert (actions[0].candidate, actions[0].request_id) == (candidate, SHUTDOWN_REQUEST)
        case A.StopPostgres():
            assert actions[0].release_lease is (request_.holds_lease and request_.role == "primary")
            assert actions[0].role == request_.role


def test_failed_shutdown_hand_over_stops_and_releases() -> None:
    _, actions = run_story([
        (ShutdownRequested(cluster(), "node1", "primary", holds_lease=True), NOW, [A.Switchover]),
        (HandOverFailed(), NOW, [A.StopPostgres]),
    ])
    stop = actions[0]
    assert isinstance(stop, A.StopPostgres) and stop.release_lease and stop.role == "primary"


def test_target_killed_after_hand_over_before_promote_starts_as_standby() -> None:
    """node2 got the lease at LSN 300; its PostgreSQL died before it promoted. Its data directory is a
    standby's (pg_control: in archive recovery): started as primary it would drop the WAL it received on
    the newer timeline; as a standby it replays all of it first, then promotes."""
    handed = cluster(lease("node2", "i-node2", version=5, lsn_at_handover=300))
    stopped = local(role=PgRole.STOPPED, lease_deadline=NOW + 5, was_primary=False, replay_lsn=None)
    memory, _ = run_story([
        (DecisionDue(handed, local(lease_deadline=None)), NOW, [A.RenewLease]),  # confirm the hand-over
        (Gathered(handed, stopped), NOW + 1, []),
        (DecisionDue(handed, stopped), NOW + 1, [A.RenewLease, A.StartStandby]),
        (StandbyStarting(), NOW + 1, []),
        (StandbyStarted(None), NOW + 2, []),
        (DecisionDue(handed, local(lease_deadline=NOW + 6, replay_lsn=250)), NOW + 2, [A.RenewLease, A.Idle]),
        (DecisionDue(handed, local(lease_deadline=NOW + 6, replay_lsn=300)), NOW + 2, [A.RenewLease, A.Promote]),
    ])
    assert memory.state is PgState.RUNNING and memory.pg_down_since == NOW + 1


def test_a_rewound_former_primary_holding_the_lease_is_no_primary_directory() -> None:
    """pg_control of a directory pg_rewind just made a standby still says 'in production'; the core
    remembers the rewind, so it is started as a standby, not a primary."""
    handed = cluster(lease("node2", "i-node2", version=5))
    stopped = local(role=PgRole.STOPPED, lease_deadline=NOW + 5, was_primary=True)
    run_story([(DecisionDue(handed, stopped), NOW, [A.RenewLease, A.StartStandby])], Memory(rewound=True))
    run_story([(DecisionDue(handed, stopped), NOW, [A.RenewLease, A.StartPrimary])], Memory())
