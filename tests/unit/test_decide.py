"""decide() tables: every situation built by hand, the expected actions checked by type and target.

CI enforces 100% branch coverage of raftpg/ha/decide.py and raftpg/ha/candidates.py with these.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from raftpg.config import Tags
from raftpg.ha import actions as A
from raftpg.ha.candidates import best_switchover_candidate, former_primary, race_blocker
from raftpg.ha.decide import decide
from raftpg.ha.views import (
    ClusterView,
    FailoverRequest,
    LocalView,
    MemberView,
    PeerPosition,
    PgRole,
    SyncState,
)
from raftpg.postgres.datadir import DataDirState
from tests.unit.ha_views import NOW, cluster, holder, lease, local, member

pytestmark = pytest.mark.unit

def kinds(actions: list[A.Action]) -> list[type]:
    return [type(a) for a in actions]


# --- uninitialised cluster -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("the_cluster", "the_local", "expected"),
    [
        pytest.param(cluster(lease(None, None), sysid=None), local(data_dir=DataDirState.EMPTY),
                     [A.AcquireLease, A.Bootstrap], id="free-claims-and-initdbs"),
        pytest.param(cluster(lease(expired=True), sysid=None), local(data_dir=DataDirState.MISSING),
                     [A.AcquireLease, A.Bootstrap], id="expired-claim-is-void"),
        pytest.param(cluster(lease(bootstrapping=True), sysid=None), local(data_dir=DataDirState.EMPTY),
                     [A.Idle], id="someone-else-bootstraps"),
        pytest.param(cluster(lease(None, None), sysid=None), local(data_dir=DataDirState.INVALID),
                     [A.Idle], id="invalid-data-dir-not-touched"),
        pytest.param(cluster(lease(None, None), sysid=None),
                     local(data_dir=DataDirState.EMPTY, tags=Tags(nofailover=True)), [A.Idle], id="nofailover"),
        pytest.param(cluster(lease(None, None), sysid=None), local(data_dir=DataDirState.INITIALIZED),
                     [A.AcquireLease, A.Bootstrap], id="adopt-existing-data"),
        pytest.param(cluster(lease(None, None), sysid=None),
                     local(data_dir=DataDirState.INITIALIZED, bootstrap_failed=True),
                     [A.MoveDataAside], id="failed-bootstrap-moved-aside"),
        pytest.param(cluster(lease(None, None), sysid=None),
                     local(data_dir=DataDirState.EMPTY, bootstrap_failed=True), [A.Idle], id="failed-bootstrap-waits"),
        pytest.param(cluster(lease("node1", "i-node1", bootstrapping=True), sysid=None),
                     holder(role=PgRole.STOPPED), [A.ReleaseLease], id="half-bootstrap-releases"),
    ],
)
def test_uninitialized(the_cluster: ClusterView, the_local: LocalView, expected: list[type]) -> None:
    assert kinds(decide(the_cluster, the_local)) == expected


def test_bootstrap_claim_is_a_cas_on_the_seen_version() -> None:
    actions = decide(cluster(lease(None, None, version=7, revision=9), sysid=None), local(data_dir=DataDirState.EMPTY))
    acquire = actions[0]
    assert isinstance(acquire, A.AcquireLease)
    assert (acquire.expected_version, acquire.expected_revision, acquire.bootstrapping) == (7, 9, True)
    bootstrap = actions[1]
    assert isinstance(bootstrap, A.Bootstrap) and not bootstrap.existing_data


# --- refusals ----------------------------------------------------------------------------------------

def test_foreign_system_identifier_refuses_and_touches_nothing() -> None:
    actions = decide(cluster(), local(system_identifier="123", role=PgRole.STOPPED))
    assert kinds(actions) == [A.Idle]
    assert "refusing to join" in actions[0].reason


def test_invalid_data_dir_in_initialized_cluster() -> None:
    assert kinds(decide(cluster(), local(data_dir=DataDirState.INVALID, role=PgRole.STOPPED))) == [A.Idle]


# --- the holder ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("the_cluster", "the_local", "expected"),
    [
        pytest.param(cluster(), holder(), [A.RenewLease, A.EnsureSlots], id="primary-renews"),
        pytest.param(cluster(use_slots=False), holder(), [A.RenewLease], id="no-slots"),
        pytest.param(cluster(), holder(data_dir=DataDirState.EMPTY), [A.ReleaseLease], id="data-gone"),
        pytest.param(cluster(), holder(role=PgRole.REPLICA), [A.RenewLease, A.Promote], id="promote-after-acquire"),
        pytest.param(cluster(lease(lsn_at_handover=500)), holder(role=PgRole.REPLICA, replay_lsn=400),
                     [A.RenewLease, A.Idle], id="wait-for-handover-lsn"),
        pytest.param(cluster(lease(lsn_at_handover=500)), holder(role=PgRole.REPLICA, replay_lsn=500),
                     [A.RenewLease, A.Promote], id="handover-lsn-reached"),
        pytest.param(cluster(), holder(role=PgRole.STOPPED, pg_down_since=NOW - 1, was_primary=True),
                     [A.RenewLease, A.StartPrimary], id="restart-crashed-primary-in-place"),
        pytest.param(cluster(), holder(role=PgRole.STOPPED, pg_down_since=None, was_primary=True),
                     [A.RenewLease, A.StartPrimary], id="just-noticed-down"),
        # chaos seed 200: a switchover target killed before it promoted holds the lease with a standby's
        # data directory; started as primary it would drop the WAL it received on the newer timeline.
        pytest.param(cluster(lease(lsn_at_handover=500)), holder(role=PgRole.STOPPED, pg_down_since=NOW - 1),
                     [A.RenewLease, A.StartStandby], id="handover-target-restarted-replays-as-standby-first"),
        pytest.param(cluster(primary_start_timeout=10), holder(role=PgRole.STOPPED, pg_down_since=NOW - 11),
                     [A.ReleaseLease], id="rule6-release-after-primary-start-timeout"),
        pytest.param(cluster(pause=True), holder(role=PgRole.STOPPED, pg_down_since=NOW - 100),
                     [A.RenewLease, A.Idle], id="paused-no-restart"),
        pytest.param(cluster(), holder(role=PgRole.UNKNOWN), [A.RenewLease, A.Idle], id="pg-not-answering"),
        pytest.param(cluster(primary_start_timeout=10), holder(role=PgRole.UNKNOWN, pg_down_since=NOW - 11),
                     [A.ReleaseLease], id="rule6-not-answering-too-long"),
        pytest.param(cluster(primary_start_timeout=10, pause=True),
                     holder(role=PgRole.STOPPED, pg_down_since=NOW - 11), [A.RenewLease, A.Idle],
                     id="paused-never-releases"),
        pytest.param(cluster(lease(bootstrapping=True)), holder(), [A.RenewLease, A.EnsureSlots],
                     id="bootstrap-done-clears-flag"),
    ],
)
def test_holder(the_cluster: ClusterView, the_local: LocalView, expected: list[type]) -> None:
    assert kinds(decide(the_cluster, the_local)) == expected


def test_holder_clears_bootstrapping_and_names_slots() -> None:
    actions = decide(cluster(lease(bootstrapping=True), permanent_slots={"archiver": {"type": "physical"}}), holder())
    renew, slots = actions
    assert isinstance(renew, A.RenewLease) and renew.clear_bootstrapping
    assert isinstance(slots, A.EnsureSlots)
    assert slots.members == frozenset({"node2", "node3"}) and slots.permanent == frozenset({"archiver"})


def test_expired_own_deadline_is_not_holding() -> None:
    """Our deadline passed: demote first (the fence will too), then try to renew."""
    actions = decide(cluster(), holder(lease_deadline=NOW - 0.5))
    assert kinds(actions) == [A.Demote, A.RenewLease]
    assert "lease not renewed" in actions[0].reason


def test_expired_own_deadline_replica_only_renews() -> None:
    assert kinds(decide(cluster(), holder(role=PgRole.REPLICA, lease_deadline=NOW - 0.5))) == [A.RenewLease]


def test_handed_over_lease_is_confirmed_before_promotion() -> None:
    actions = decide(cluster(lease("node2", "i-node2", lsn_at_handover=10)), local())
    assert kinds(actions) == [A.RenewLease]


# --- failover requests seen by the holder ----------------------------------------------------------------

def request(**kw: Any) -> FailoverRequest:
    return FailoverRequest(request_id=kw.pop("request_id", "r1"), leader=kw.pop("leader", "node1"),
                           candidate=kw.pop("candidate", "node2"), **kw)


@pytest.mark.parametrize(
    ("the_request", "expected", "members"),
    [
        pytest.param(request(), A.Switchover, None, id="named-candidate"),
        pytest.param(request(candidate=None), A.Switchover, None, id="best-candidate"),
        pytest.param(request(leader="node3"), A.ClearFailover, None, id="stale-leader"),
        pytest.param(request(candidate="node1"), A.ClearFailover, None, id="candidate-is-leader"),
        pytest.param(request(scheduled_at=1_700_000_100.0), A.Idle, None, id="scheduled-later"),
        pytest.param(request(scheduled_at=1_699_999_999.0), A.Switchover, None, id="scheduled-due"),
        pytest.param(request(candidate="node9"), A.ClearFailover, None, id="unknown-candidate"),
        pytest.param(request(), A.ClearFailover,
                     [member("node1", role="primary"), member("node2", fresh=False)], id="stale-candidate"),
        pytest.param(request(candidate=None), A.ClearFailover,
                     [member("node1", role="primary"), member("node2", nofailover=True)], id="no-candidate"),
        pytest.param(request(leader=None), A.Switchover, None, id="failover-with-live-leader"),
    ],
)
def test_failover_request(the_request: FailoverRequest, expected: type,
                          members: list[MemberView] | None) -> None:
    actions = decide(cluster(failover=the_request, members=members), holder())
    assert type(actions[-1]) is expected


def test_switchover_picks_the_most_advanced_then_priority() -> None:
    members = [member("node1", role="primary"), member("node2", lsn=90, failover_priority=5),
               member("node3", lsn=100), member("node4", lsn=100, failover_priority=2)]
    actions = decide(cluster(failover=request(candidate=None), members=members), holder())
    switch = actions[-1]
    assert isinstance(switch, A.Switchover) and switch.candidate == "node4"


def test_switchover_in_sync_mode_prefers_sync_members() -> None:
    members = [member("node1", role="primary"), member("node2", lsn=90), member("node3", lsn=100)]
    the_cluster = cluster(failover=request(candidate=None), members=members, synchronous_mode="on",
                          sync=SyncState("node1", frozenset({"node2"}), 1))
    switch = decide(the_cluster, holder())[-1]
    assert isinstance(switch, A.Switchover) and switch.candidate == "node2"


# --- the lease named after us from an earlier process --------------------------------------------------

def test_restarted_holder_reclaims() -> None:
    actions = decide(cluster(lease("node2", "i-old")), local(role=PgRole.PRIMARY))
    assert kinds(actions) == [A.AcquireLease]
    assert actions[0].expected_version == 3 and actions[0].expected_revision == 40


def test_restarted_holder_without_data_waits() -> None:
    actions = decide(cluster(lease("node2", "i-old")), local(data_dir=DataDirState.EMPTY, role=PgRole.STOPPED))
    assert kinds(actions) == [A.Idle]


def test_restarted_holder_after_expiry_races_normally() -> None:
    actions = decide(cluster(lease("node2", "i-old", expired=True)), local(role=PgRole.PRIMARY))
    assert kinds(actions) == [A.Demote]


# --- an open lease: the race ------------------------------------------------------------------------------

OPEN = lease(expired=True)


@pytest.mark.parametrize(
    ("the_cluster", "the_local", "expected"),
    [
        pytest.param(cluster(OPEN), local(), [A.AcquireLease], id="healthiest-takes-it"),
        pytest.param(cluster(lease(None, None)), local(), [A.AcquireLease], id="released-lease"),
        pytest.param(cluster(OPEN), local(role=PgRole.PRIMARY), [A.Demote], id="primary-without-lease"),
        pytest.param(cluster(OPEN, pause=True), local(), [A.Idle], id="paused"),
        pytest.param(cluster(OPEN), local(data_dir=DataDirState.EMPTY, role=PgRole.STOPPED), [A.Idle],
                     id="no-data"),
        pytest.param(cluster(OPEN), local(role=PgRole.STOPPED), [A.StartStandby], id="start-to-learn-position"),
        pytest.param(cluster(OPEN, pause=True, failover=request(candidate="node2", leader=None)),
                     local(role=PgRole.STOPPED), [A.Idle], id="paused-manual-not-started"),
        pytest.param(cluster(OPEN, pause=True, failover=request(candidate="node2", leader=None)),
                     local(), [A.AcquireLease], id="manual-failover-while-paused"),
        pytest.param(cluster(OPEN, failover=request(candidate="node3", leader=None)), local(), [A.Idle],
                     id="leave-race-to-requested-candidate"),
        pytest.param(cluster(OPEN, failover=request(candidate="node3", leader=None),
                             members=[member("node1", role="primary"), member("node3", fresh=False)]),
                     local(), [A.AcquireLease], id="requested-candidate-gone"),
        pytest.param(cluster(OPEN), local(tags=Tags(nofailover=True)), [A.Idle], id="nofailover"),
        pytest.param(cluster(OPEN), local(lsn=None), [A.Idle], id="own-position-unknown"),
        pytest.param(cluster(OPEN, maximum_lag_on_failover=10), local(lsn=100), [A.Idle], id="too-far-behind"),
        pytest.param(cluster(OPEN, check_timeline=True,
                             members=[member("node1", role="primary", timeline=3, lsn=200)]),
                     local(timeline=2), [A.Idle], id="timeline-behind"),
        pytest.param(cluster(OPEN, peers=[PeerPosition("node3", True, lsn=300)]), local(), [A.Idle],
                     id="peer-ahead"),
        pytest.param(cluster(OPEN, peers=[PeerPosition("node3", True, lsn=200, failover_priority=9)]),
                     local(), [A.Idle], id="peer-equal-higher-priority"),
        pytest.param(cluster(OPEN, peers=[PeerPosition("node3", True, lsn=200)]), local(), [A.AcquireLease],
                     id="peer-equal"),
        pytest.param(cluster(OPEN, peers=[PeerPosition("node3", False), PeerPosition("node2", True, lsn=1),
                                          PeerPosition("node1", True, lsn=None),
                                          PeerPosition("node4", True, lsn=900, nofailover=True)]),
                     local(), [A.AcquireLease], id="unreachable-self-unknown-nofailover-peers-ignored"),
        pytest.param(cluster(OPEN, peers=[PeerPosition("node1", True, role="primary", lsn=200)]), local(),
                     [A.Idle], id="old-primary-still-answers"),
        pytest.param(cluster(OPEN, failover=request(candidate="node2", leader="node1"),
                             peers=[PeerPosition("node3", True, lsn=900)]),
                     local(), [A.AcquireLease], id="manual-skips-healthiest-check"),
    ],
)
def test_race(the_cluster: ClusterView, the_local: LocalView, expected: list[type]) -> None:
    assert kinds(decide(the_cluster, the_local)) == expected


def test_race_reasons_name_the_cause() -> None:
    behind = decide(cluster(OPEN, maximum_lag_on_failover=10), local(lsn=100))[0]
    assert "maximum_lag_on_failover" in behind.reason
    ahead = decide(cluster(OPEN, peers=[PeerPosition("node3", True, lsn=300)]), local())[0]
    assert "node3 is further ahead" in ahead.reason


@pytest.mark.parametrize(
    ("mode", "sync", "peers", "me", "allowed"),
    [
        pytest.param("off", SyncState("node1", frozenset({"node3"}), 1), [], "node2", False,
                     id="record-honoured-after-mode-off"),
        pytest.param("on", SyncState("node1", frozenset({"node3"}), 0), [], "node2", True,
                     id="quorum-zero-no-guarantee"),
        pytest.param("on", SyncState("node1", frozenset(), 0), [], "node2", True, id="no-sync-members"),
        pytest.param("on", SyncState("node1", frozenset({"node3"}), 1), [], "node2", False, id="not-in-sync-set"),
        pytest.param("on", SyncState("node1", frozenset({"node2"}), 1), [], "node2", True, id="in-sync-set"),
        pytest.param("quorum", SyncState("node1", frozenset({"node2", "node3"}), 1), [], "node2", False,
                     id="quorum-cannot-prove"),
        pytest.param("quorum", SyncState("node1", frozenset({"node2", "node3"}), 1),
                     [PeerPosition("node3", True, lsn=150)], "node2", True, id="quorum-proved"),
        pytest.param("quorum", SyncState("node1", frozenset({"node2", "node3"}), 1),
                     [PeerPosition("node3", True, lsn=250)], "node2", False, id="quorum-peer-ahead"),
        pytest.param("quorum", SyncState("node1", frozenset({"node2", "node3"}), 2), [], "node2", True,
                     id="quorum-all-ack"),
        pytest.param("quorum", SyncState("node1", frozenset({"node2", "node3"}), 1),
                     [PeerPosition("node3", False), PeerPosition("node1", True, lsn=None, role="stopped")],
                     "node2", False, id="quorum-peer-unreachable"),
    ],
)
def test_sync_eligibility(mode: str, sync: SyncState, peers: list[PeerPosition], me: str, allowed: bool) -> None:
    the_cluster = cluster(OPEN, synchronous_mode=mode, sync=sync, peers=peers)
    assert (race_blocker(the_cluster, local(me), manual=False) is None) is allowed


def test_accept_data_loss_skips_sync_rule() -> None:
    the_cluster = cluster(OPEN, synchronous_mode="on", sync=SyncState("node1", frozenset({"node3"}), 1),
                          failover=request(candidate="node2", leader=None, accept_data_loss=True))
    assert kinds(decide(the_cluster, local())) == [A.AcquireLease]
    refused = replace(the_cluster, failover=request(candidate="node2", leader=None))
    assert kinds(decide(refused, local())) == [A.Idle]


def test_quorum_with_unknown_own_position_is_blocked_earlier() -> None:
    the_cluster = cluster(OPEN, synchronous_mode="quorum", sync=SyncState("node1", frozenset({"node2"}), 1))
    assert race_blocker(the_cluster, local(lsn=None), manual=False) == "we cannot tell our own WAL position"


def test_former_primary_without_holder_record() -> None:
    the_cluster = cluster(lease(None, None), members=[member("a", role="primary", timeline=2, lsn=5),
                                                      member("b", role="primary", timeline=3, lsn=1)])
    found = former_primary(the_cluster)
    assert found is not None and found.name == "b"
    assert former_primary(cluster(lease(None, None), members=[member("a")])) is None


def test_former_primary_is_us_skips_lag_check() -> None:
    the_cluster = cluster(lease("node2", "i-x", expired=True), maximum_lag_on_failover=1,
                          members=[member("node2", role="primary", lsn=10_000)])
    assert race_blocker(the_cluster, local(lsn=5), manual=False) is None


def test_best_candidate_requires_healthy_named_member() -> None:
    the_cluster = cluster()
    assert best_switchover_candidate(the_cluster, "node1", "node3") == "node3"
    assert best_switchover_candidate(the_cluster, "node1", "node1") is None


# --- followers ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("the_cluster", "the_local", "expected"),
    [
        pytest.param(cluster(), local(), [A.EnsureSlots, A.Idle], id="streaming-replica-keeps-slots"),
        pytest.param(cluster(use_slots=False), local(), [A.Idle], id="streaming-replica-no-slots"),
        pytest.param(cluster(), local(role=PgRole.PRIMARY), [A.Demote], id="second-primary-demotes"),
        pytest.param(cluster(pause=True), local(role=PgRole.PRIMARY), [A.Demote], id="demote-even-paused"),
        pytest.param(cluster(), local(data_dir=DataDirState.EMPTY, role=PgRole.STOPPED), [A.Clone], id="clone"),
        pytest.param(cluster(pause=True), local(data_dir=DataDirState.MISSING, role=PgRole.STOPPED), [A.Idle],
                     id="paused-no-clone"),
        pytest.param(cluster(), local(role=PgRole.STOPPED), [A.StartStandby], id="start-standby"),
        pytest.param(cluster(pause=True), local(role=PgRole.STOPPED), [A.Idle], id="paused-no-start"),
        pytest.param(cluster(), local(upstream=None), [A.Follow], id="point-at-leader"),
        pytest.param(cluster(), local(upstream="node3"), [A.Follow], id="re-point-at-leader"),
        pytest.param(cluster(members=[member("node1", role="primary", timeline=2)]),
                     local(role=PgRole.STOPPED, was_primary=True, timeline=1), [A.Rewind], id="rewind-old-primary"),
        pytest.param(cluster(members=[member("node1", role="primary", timeline=2)], use_pg_rewind=False),
                     local(role=PgRole.STOPPED, was_primary=True, timeline=1), [A.Idle], id="rewind-disabled"),
        pytest.param(cluster(members=[member("node1", role="primary", timeline=1)]),
                     local(role=PgRole.STOPPED, was_primary=True, timeline=1), [A.StartStandby],
                     id="same-timeline-no-rewind"),
        pytest.param(cluster(members=[member("node1", role="primary", timeline=None)]),
                     local(role=PgRole.STOPPED, was_primary=True, timeline=1), [A.StartStandby],
                     id="leader-timeline-unknown"),
        pytest.param(cluster(members=[member("node3")]),
                     local(role=PgRole.STOPPED, was_primary=True, timeline=1), [A.Idle],
                     id="leader-record-missing"),
        pytest.param(cluster(members=[member("node1", role="replica", timeline=1)]),
                     local(role=PgRole.STOPPED, was_primary=True, timeline=1), [A.Idle],
                     id="leader-still-promoting"),
        pytest.param(cluster(members=[member("node1", role="replica", timeline=1)]),
                     local(role=PgRole.STOPPED, timeline=1), [A.StartStandby],
                     id="plain-standby-may-cascade-from-promoting-leader"),
        pytest.param(cluster(), local(role=PgRole.STOPPED, rewind_failed=True), [A.Idle], id="rewind-failed"),
        pytest.param(cluster(remove_data_directory_on_rewind_failure=True),
                     local(role=PgRole.STOPPED, rewind_failed=True), [A.MoveDataAside], id="rewind-failed-reclone"),
        pytest.param(cluster(), local(role=PgRole.UNKNOWN), [A.Idle], id="pg-unknown"),
    ],
)
def test_follower(the_cluster: ClusterView, the_local: LocalView, expected: list[type]) -> None:
    assert kinds(decide(the_cluster, the_local)) == expected


def test_follower_demote_names_the_holder() -> None:
    demote = decide(cluster(), local(role=PgRole.PRIMARY))[0]
    assert "node1 holds the lease (version 3)" in demote.reason


def test_invalid_data_dir_follower() -> None:
    """An INVALID data dir is refused before anything else."""
    actions = decide(cluster(), local(data_dir=DataDirState.INVALID, role=PgRole.STOPPED))
    assert kinds(actions) == [A.Idle] and actions[0].warning


def test_cascading_replicatefrom() -> None:
    me = local(tags=Tags(replicatefrom="node3"), upstream="node1")
    follow = decide(cluster(), me)[0]
    assert isinstance(follow, A.Follow) and follow.upstream == "node3"
    gone = cluster(members=[member("node1", role="primary"), member("node3", fresh=False)])
    assert kinds(decide(gone, replace(me, upstream="node1"))) == [A.EnsureSlots, A.Idle]
    assert kinds(decide(cluster(), local(tags=Tags(replicatefrom="node2")))) == [A.EnsureSlots, A.Idle]


def test_clone_prefers_clonefrom_member() -> None:
    members = [member("node1", role="primary"), member("node3", clonefrom=True),
               member("node4", clonefrom=True, fresh=False), member("node2", clonefrom=True)]
    clone = decide(cluster(members=members), local(data_dir=DataDirState.EMPTY, role=PgRole.STOPPED))[0]
    assert isinstance(clone, A.Clone) and clone.source == "node3"
    plain = decide(cluster(), local(data_dir=DataDirState.EMPTY, role=PgRole.STOPPED))[0]
    assert isinstance(plain, A.Clone) and plain.source == "node1"


def test_invalid_data_dir_with_no_sysid_in_uninitialised_follower_path() -> None:
    """A follower whose data dir vanished entirely (MISSING) clones."""
    actions = decide(cluster(), local(data_dir=DataDirState.MISSING, role=PgRole.STOPPED, system_identifier=None))
    assert kinds(actions) == [A.Clone]


def test_views_parse_records() -> None:
    view = MemberView.from_record("n", {"tags": {"nofailover": True, "replicatefrom": "x"}, "lsn": "5",
                                        "timeline": None, "port": None}, fresh=False)
    assert view.tags.nofailover and view.tags.replicatefrom == "x" and view.lsn == 5 and view.timeline is None
    req = FailoverRequest.from_record({"request_id": "r", "leader": "", "candidate": "b", "scheduled_at": 5})
    assert req.leader is None and req.candidate == "b" and req.scheduled_at == 5.0
    assert SyncState.from_record({"leader": "a", "members": ["b"], "quorum": 1}).members == frozenset({"b"})
    assert cluster().holder_member is not None and cluster(lease(None, None)).holder_member is None


def test_replica_slots_cover_every_other_member() -> None:
    slots = decide(cluster(), local())[0]
    assert isinstance(slots, A.EnsureSlots) and slots.members == frozenset({"node1", "node3"})


def test_member_gone_longer_than_member_slots_ttl_is_forgotten() -> None:
    members = [member("node1", role="primary"), member("node2"), replace(member("node3", fresh=False), age=100.0)]
    actions = decide(cluster(members=members, member_slots_ttl=60), holder())
    assert kinds(actions) == [A.RenewLease, A.RemoveMember, A.EnsureSlots]
    remove, slots = actions[1], actions[2]
    assert isinstance(remove, A.RemoveMember) and remove.name == "node3"
    assert isinstance(slots, A.EnsureSlots) and slots.members == frozenset({"node2"})


def test_primary_with_a_full_disk_hands_over() -> None:
    actions = decide(cluster(), holder(cannot_lead="pg_wal has 10 MB free"))
    switch = actions[-1]
    assert isinstance(switch, A.Switchover) and "pg_wal has 10 MB free" in switch.reason


def test_primary_with_a_full_disk_and_no_candidate_keeps_running_and_warns() -> None:
    lonely = cluster(members=[member("node1", role="primary")])
    actions = decide(lonely, holder(cannot_lead="pg_wal has 10 MB free"))
    assert kinds(actions) == [A.RenewLease, A.EnsureSlots, A.Idle] and actions[-1].warning


def test_replica_with_a_full_disk_does_not_race() -> None:
    actions = decide(cluster(OPEN), local(cannot_lead="raft directory has 1 MB free"))
    assert kinds(actions) == [A.Idle] and "raft directory" in actions[0].reason


def test_stuck_standby_on_another_timeline_stops_to_rewind() -> None:
    the_cluster = cluster(members=[member("node1", role="primary", timeline=3), member("node2")])
    actions = decide(the_cluster, local(timeline=2, standby_stuck=True))
    demote = actions[0]
    assert isinstance(demote, A.Demote) and demote.then_rewind and not demote.immediate
    assert kinds(decide(the_cluster, local(timeline=3, standby_stuck=True))) == [A.EnsureSlots, A.Idle]
    assert kinds(decide(the_cluster, local(timeline=2, standby_stuck=False))) == [A.EnsureSlots, A.Idle]


def test_recovering_standby_is_pointed_at_the_leader_and_rewinds_if_stuck_on_another_timeline() -> None:
    """A standby that accepts no connections yet (not consistent) may need WAL only the leader has:
    started to learn its position with no upstream, it would wait for ever."""
    the_cluster = cluster(members=[member("node1", role="primary", timeline=3), member("node2")])
    recovering = local(role=PgRole.UNKNOWN, standby_mode=True, upstream=None, timeline=2)
    actions = decide(the_cluster, recovering)
    assert kinds(actions) == [A.Follow] and actions[0].upstream == "node1"
    following = replace(recovering, upstream="node1")
    assert kinds(decide(the_cluster, following)) == [A.Idle]
    stuck = decide(the_cluster, replace(following, standby_stuck=True))
    assert isinstance(stuck[0], A.Demote) and stuck[0].then_rewind
    assert kinds(decide(the_cluster, replace(following, standby_stuck=True, timeline=3))) == [A.Idle]
    # A postmaster we cannot query and that is no standby (crash recovery of a primary): wait.
    assert kinds(decide(the_cluster, local(role=PgRole.UNKNOWN, upstream=None))) == [A.Idle]


def test_standby_that_failed_to_start_rewinds_when_timelines_differ() -> None:
    the_cluster = cluster(members=[member("node1", role="primary", timeline=3), member("node2")])
    actions = decide(the_cluster, local(role=PgRole.STOPPED, timeline=2, needs_rewind=True))
    assert kinds(actions) == [A.Rewind]


def test_standby_that_stays_inconsistent_after_rewind_not_needed_is_recloned() -> None:
    """chaos seed 200, fault 198: pg_rewind said "not needed" against node1, but the WAL the standby
    needs to become consistent is gone everywhere; rewinding again would loop forever."""
    the_cluster = cluster(members=[member("node1", role="primary", timeline=119), member("node2")])
    stuck = local(role=PgRole.STOPPED, timeline=114, needs_rewind=True, rewind_not_needed_from="node1")
    actions = decide(the_cluster, stuck)
    assert kinds(actions) == [A.MoveDataAside]
    assert "nothing to rewind from node1" in actions[0].reason
    # Against another holder (or before the standby failed again) the rewind is tried first.
    assert kinds(decide(the_cluster, replace(stuck, rewind_not_needed_from="node3"))) == [A.Rewind]
    assert kinds(decide(the_cluster, replace(stuck, needs_rewind=False, was_primary=True))) == [A.Rewind]
    # Paused: nothing is moved.
    assert kinds(decide(cluster(members=[member("node1", role="primary", timeline=119), member("node2")],
                                pause=True), stuck)) == [A.Idle]


# --- the restart path: primary_start_timeout follows the mode ---------------------------------------

@pytest.mark.parametrize(
    ("the_cluster", "the_local", "expected"),
    [
        pytest.param(cluster(synchronous_mode="quorum"), holder(role=PgRole.STOPPED, pg_down_since=NOW),
                     [A.ReleaseLease], id="quorum-postmaster-crash-fails-over-at-once"),
        pytest.param(cluster(synchronous_mode="on"), holder(role=PgRole.STOPPED, pg_down_since=None),
                     [A.ReleaseLease], id="on-just-noticed-down-fails-over"),
        pytest.param(cluster(synchronous_mode="off"), holder(role=PgRole.STOPPED, pg_down_since=NOW - 29,
                                                                  was_primary=True),
                     [A.RenewLease, A.StartPrimary], id="async-restarts-in-place"),
        pytest.param(cluster(synchronous_mode="quorum", primary_start_timeout=10),
                     holder(role=PgRole.STOPPED, pg_down_since=NOW - 1, was_primary=True),
                     [A.RenewLease, A.StartPrimary], id="quorum-operator-asks-for-restart-in-place"),
        # A postmaster that is alive but not answering might still accept writes: at least one ttl.
        pytest.param(cluster(synchronous_mode="quorum"), holder(role=PgRole.UNKNOWN, pg_down_since=NOW - 4),
                     [A.RenewLease, A.Idle], id="quorum-not-answering-keeps-lease-for-ttl"),
        pytest.param(cluster(synchronous_mode="quorum"), holder(role=PgRole.UNKNOWN, pg_down_since=NOW - 10),
                     [A.ReleaseLease], id="quorum-not-answering-for-ttl-releases"),
        pytest.param(cluster(synchronous_mode="quorum", pause=True), holder(role=PgRole.STOPPED, pg_down_since=NOW),
                     [A.RenewLease, A.Idle], id="quorum-paused-keeps-lease"),
    ],
)
def test_start_timeout_follows_the_mode(the_cluster: ClusterView, the_local: LocalView,
                                        expected: list[type]) -> None:
    assert kinds(decide(the_cluster, the_local)) == expected


RESTARTED = dict(instance_id="i-node1-new", lease_deadline=None)


@pytest.mark.parametrize(
    ("the_cluster", "the_local", "expected"),
    [
        pytest.param(cluster(synchronous_mode="quorum"), holder(role=PgRole.STOPPED, **RESTARTED),
                     [A.AcquireLease, A.ReleaseLease], id="restarted-holder-pg-surely-stopped-releases-now"),
        pytest.param(cluster(synchronous_mode="quorum"), holder(role=PgRole.UNKNOWN, **RESTARTED),
                     [A.AcquireLease], id="restarted-holder-postmaster-alive-never-releases-early"),
        pytest.param(cluster(synchronous_mode="quorum"), holder(role=PgRole.PRIMARY, **RESTARTED),
                     [A.AcquireLease], id="restarted-holder-primary-running-reclaims"),
        pytest.param(cluster(synchronous_mode="off"), holder(role=PgRole.STOPPED, **RESTARTED),
                     [A.AcquireLease], id="restarted-holder-async-reclaims-to-restart"),
        pytest.param(cluster(synchronous_mode="quorum", pause=True), holder(role=PgRole.STOPPED, **RESTARTED),
                     [A.AcquireLease], id="restarted-holder-paused-reclaims"),
    ],
)
def test_restarted_holder(the_cluster: ClusterView, the_local: LocalView, expected: list[type]) -> None:
    assert kinds(decide(the_cluster, the_local)) == expected


# --- heal without an operator where provably safe ----------------------------------------------------

@pytest.mark.parametrize(
    ("the_cluster", "the_local", "expected", "warning"),
    [
        pytest.param(cluster(synchronous_mode="quorum"),
                     local(role=PgRole.STOPPED, rewind_failed=True, rewind_hopeless=True), A.MoveDataAside, False,
                     id="quorum-hopeless-reclones"),
        pytest.param(cluster(synchronous_mode="on"),
                     local(role=PgRole.STOPPED, rewind_failed=True, rewind_hopeless=True), A.MoveDataAside, False,
                     id="on-hopeless-reclones"),
        pytest.param(cluster(synchronous_mode="off"),
                     local(role=PgRole.STOPPED, rewind_failed=True, rewind_hopeless=True), A.Idle, True,
                     id="async-hopeless-asks-the-operator"),
        pytest.param(cluster(synchronous_mode="quorum"),
                     local(role=PgRole.STOPPED, rewind_failed=True), A.Idle, True,
                     id="quorum-transient-failure-retries-later"),
    ],
)
def test_rewind_cannot_succeed(the_cluster: ClusterView, the_local: LocalView, expected: type,
                               warning: bool) -> None:
    actions = decide(the_cluster, the_local)
    assert kinds(actions) == [expected]
    if isinstance(actions[0], A.Idle):
        assert actions[0].warning is warning
    if warning and the_local.rewind_hopeless:
        assert "raftpg ctl reinit" in actions[0].reason


QUORUM_SYNC = SyncState("node1", frozenset({"node2", "node3"}), 1)


@pytest.mark.parametrize(
    ("the_cluster", "the_local", "expected"),
    [
        pytest.param(cluster(lease(holder=None, instance=None), synchronous_mode="quorum", sync=QUORUM_SYNC),
                     local("node1", role=PgRole.STOPPED, was_primary=True), A.Idle,
                     id="released-crashed-primary-leaves-race-to-sync-members"),
        pytest.param(cluster(lease(holder=None, instance=None), synchronous_mode="quorum", sync=QUORUM_SYNC),
                     local("node2", role=PgRole.STOPPED), A.StartStandby, id="sync-member-starts-to-race"),
        pytest.param(cluster(lease(holder=None, instance=None), synchronous_mode="quorum"),
                     local("node1", role=PgRole.STOPPED, was_primary=True), A.StartStandby,
                     id="no-sync-set-anyone-races"),
        pytest.param(cluster(lease(holder=None, instance=None), synchronous_mode="quorum", sync=QUORUM_SYNC,
                             failover=FailoverRequest("r1", None, "node1", accept_data_loss=True)),
                     local("node1", role=PgRole.STOPPED, was_primary=True), A.StartStandby,
                     id="operator-accepted-data-loss"),
    ],
)
def test_lease_free_outside_the_sync_set(the_cluster: ClusterView, the_local: LocalView, expected: type) -> None:
    assert kinds(decide(the_cluster, the_local)) == [expected]


@pytest.mark.parametrize(
    ("the_cluster", "the_local", "expected"),
    [
        pytest.param(cluster(), local(role=PgRole.STOPPED, rewind_interrupted=True), A.MoveDataAside,
                     id="interrupted-rewind-reclones-async"),
        pytest.param(cluster(synchronous_mode="quorum"), local(role=PgRole.STOPPED, rewind_interrupted=True),
                     A.MoveDataAside, id="interrupted-rewind-reclones-quorum"),
        pytest.param(cluster(pause=True), local(role=PgRole.STOPPED, rewind_interrupted=True), A.Idle,
                     id="interrupted-rewind-paused-waits"),
        pytest.param(cluster(), local(role=PgRole.REPLICA, rewind_interrupted=True), A.Idle,
                     id="running-postgres-is-never-moved"),
    ],
)
def test_interrupted_rewind(the_cluster: ClusterView, the_local: LocalView, expected: type) -> None:
    assert type(decide(the_cluster, the_local)[-1]) is expected
