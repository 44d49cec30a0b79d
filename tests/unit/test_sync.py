"""Rule 5: the synchronous-replication planner, and a model check of its invariant."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from raftpg.config import DynamicConfig, Tags
from raftpg.ha import actions as A
from raftpg.ha.decide import decide
from raftpg.ha.sync import (
    ASYNC,
    BLOCKING_NAME,
    Candidate,
    SyncSet,
    may_fall_back,
    next_step,
    parse_standby_names,
    standby_names,
    sync_wait_since,
    target_set,
)
from raftpg.ha.views import ClusterView, LeaseView, LocalView, MemberView, PgRole, SyncState
from raftpg.postgres.datadir import DataDirState

pytestmark = pytest.mark.unit


def s(*names: str, k: int | None = None) -> SyncSet:
    return SyncSet(frozenset(names), len(names) if k is None else k)


@pytest.mark.parametrize(
    ("mode", "sync", "text"),
    [
        ("on", s("b", "a"), 'FIRST 2 ("a", "b")'),
        ("quorum", s("a", "b", "c", k=1), 'ANY 1 ("a", "b", "c")'),
        ("on", ASYNC, ""),
        ("on", None, f'FIRST 1 ("{BLOCKING_NAME}")'),
    ],
)
def test_standby_names_round_trip(mode: str, sync: SyncSet | None, text: str) -> None:
    assert standby_names(mode, sync) == text
    assert parse_standby_names(text) == sync


@pytest.mark.parametrize("text", ["*", "FIRST 1 (*)", "garbage ((", "2 (a, *)"])
def test_unknown_or_wildcard_settings_count_as_blocking(text: str) -> None:
    assert parse_standby_names(text) is None


def test_parse_plain_priority_list() -> None:
    assert parse_standby_names("1 (a, b)") == s("a", "b", k=1)
    assert parse_standby_names(None) == ASYNC


def test_target_sets() -> None:
    cands = [Candidate("a", 10), Candidate("b", 30), Candidate("c", 20)]
    assert target_set("off", 1, False, cands, ASYNC) == ASYNC
    assert target_set("on", 1, False, cands, ASYNC) == s("b")
    assert target_set("on", 1, False, cands, s("a")) == s("a"), "keeps a current member"
    assert target_set("on", 5, False, cands, ASYNC) == s("a", "b", "c")
    assert target_set("quorum", 1, False, cands, ASYNC) == s("a", "b", "c", k=1)
    assert target_set("quorum", 9, False, cands, ASYNC) == s("a", "b", "c", k=3)
    assert target_set("on", 1, False, [], s("a")) == ASYNC
    assert target_set("on", 1, True, [], s("a")) is None


def test_steps_swap_a_for_b() -> None:
    """Widen Raft, set PostgreSQL, wait for the new member to flush past the switch, narrow Raft."""
    raft, pg, target = s("a"), s("a"), s("b")
    step = next_step(raft, pg, target, {"a": 100, "b": 100}, 100)
    assert step is not None and step.raft == s("a", "b", k=1)
    step = next_step(s("a", "b", k=1), pg, target, {}, 100)
    assert step is not None and step.postgres == target
    assert next_step(s("a", "b", k=1), target, target, {"b": 90}, 100) is None, "b has not flushed the switch"
    step = next_step(s("a", "b", k=1), target, target, {"b": 100}, 100)
    assert step is not None and step.raft == target
    assert next_step(target, target, target, {}, 0) is None


def test_steps_from_async_publish_the_target_itself() -> None:
    step = next_step(ASYNC, ASYNC, s("a", "b", k=1), {}, 0)
    assert step is not None and step.raft == s("a", "b", k=1)
    step = next_step(s("a", "b", k=1), ASYNC, s("a", "b", k=1), {}, 0)
    assert step is not None and step.postgres == s("a", "b", k=1)


def test_steps_from_blocking_and_to_async() -> None:
    step = next_step(ASYNC, None, s("a"), {}, 0)
    assert step is not None and step.raft == s("a")
    step = next_step(s("a"), None, s("a"), {}, 0)
    assert step is not None and step.postgres == s("a")
    step = next_step(s("a"), s("a"), ASYNC, {}, 0)
    assert step is not None and step.raft == ASYNC, "going asynchronous: Raft first"
    step = next_step(ASYNC, s("a"), ASYNC, {}, 0)
    assert step is not None and step.postgres == ASYNC
    assert next_step(s("a"), None, None, {}, 0) is None, "strict with no standby: keep blocking"


def test_steps_from_blocking_under_an_inherited_record() -> None:
    """A new primary (b) inherits the record of its predecessor's commits, {b, c} quorum 1. Raft
    narrows to its own standbys only once they flushed past the switch; before that a record that
    does not cover the old one is widened, never replaced."""
    inherited = s("b", "c", k=1)
    step = next_step(inherited, None, s("c"), {"c": 10}, 100)
    assert step is not None and step.postgres == s("c") and step.raft is None, "Raft covers the target"
    assert next_step(inherited, s("c"), s("c"), {"c": 90}, 100) is None, "c has not flushed the switch"
    step = next_step(inherited, s("c"), s("c"), {"c": 100}, 100)
    assert step is not None and step.raft == s("c")
    step = next_step(s("b"), None, s("c", "d", k=1), {}, 100)
    assert step is not None and step.raft == s("b", "c", "d", k=1), "widened, not replaced"
    step = next_step(s("b", "c", "d", k=1), None, s("c", "d", k=1), {}, 100)
    assert step is not None and step.postgres == s("c", "d", k=1)
    step = next_step(s("c"), None, s("c", "d", k=1), {}, 100)
    assert step is not None and step.raft == s("c", "d", k=1), "the target keeps c's statement true: jump"
    step = next_step(inherited, None, ASYNC, {}, 100)
    assert step is not None and step.raft == ASYNC, "the fallback's documented trade"


def _race_winner(raft: SyncSet, has: dict[str, int], up: set[str], rng: random.Random) -> str | None:
    """The leader race with what a candidate can see: a random part of the live members answers in
    time. candidates._sync_blocker: with a record, a candidate is one of its members, has seen
    len - quorum + 1 of them (itself included) and is behind none it saw; with no record, it is
    behind none it saw."""
    for candidate in rng.sample(sorted(up), len(up)):
        seen = {m for m in up if rng.random() < 0.6} | {candidate}
        if any(has[m] > has[candidate] for m in seen):
            continue
        if raft.empty:
            return candidate
        if candidate in raft.members and len(seen & raft.members) >= len(raft.members) - raft.quorum + 1:
            return candidate
    return None


@pytest.mark.parametrize("mode", ["on", "quorum"])
def test_model_check_no_acknowledged_commit_lost_across_changes_of_holder(mode: str) -> None:
    """Random writes, replication, planner steps, switchovers and primary deaths (a switchover
    target may die before it wrote anything), with the lease and the sync record kept by
    consensus/state.py. A promotion must never drop a commit PostgreSQL acknowledged
    (strict mode: there is no asynchronous fallback to excuse one)."""
    from raftpg.consensus import state as st

    rng = random.Random(7 if mode == "on" else 8)
    names = ["a", "b", "c", "d"]
    for _ in range(150):
        state = st.initial_state()
        assert st.acquire_lease(state, "a", "i-a", 0, 0, 5.0, False, "r0", 0.0)
        primary = "a"
        has = dict.fromkeys(names, 0)  # every member holds a prefix of the one history
        up = set(names)
        pg: SyncSet | None = None
        switch = acked = 0
        for tick in range(300):
            lease = state["lease"]
            raft = SyncSet(frozenset(state["sync"]["members"]), int(state["sync"].get("quorum", 0)))
            event = rng.random()
            if event < 0.3 and primary in up:
                has[primary] += 1
            elif event < 0.6:
                for m in up - {primary}:
                    has[m] = min(has[primary], has[m] + rng.randint(0, 2))
            elif event < 0.9 and primary in up:
                standbys = [Candidate(m, has[m]) for m in sorted(up - {primary}) if rng.random() < 0.9]
                target = target_set(mode, rng.randint(1, 2), True, standbys, raft)
                step = next_step(raft, pg, target, {m: has[m] for m in up - {primary}}, switch)
                if step is not None and step.raft is not None:
                    record = {"members": sorted(step.raft.members), "quorum": step.raft.quorum}
                    assert st.set_sync(state, primary, lease["instance_id"], lease["version"], record)
                elif step is not None:
                    pg, switch = step.postgres, has[primary]
            elif event < 0.95 and primary in up and len(up) == len(names):
                # Switchover (rule 4): the primary stops, the target has received all of its WAL.
                target_name = rng.choice(sorted(set(names) - {primary}))
                has[target_name] = has[primary]
                assert st.handover_lease(state, primary, lease["instance_id"], lease["version"], target_name,
                                         f"i-{target_name}", has[primary], f"h{tick}", both_hold_all=True)
                primary, pg, switch = target_name, None, has[target_name]
            elif primary in up and len(up) == len(names):
                up.discard(primary)  # the primary dies; one faulty member at a time
            else:
                up = set(names)  # it comes back (as a standby, if someone took over)
            if pg is not None and not pg.empty and primary in up:
                counted = sorted((has[m] for m in pg.members), reverse=True)
                if len(counted) >= pg.quorum:
                    acked = max(acked, counted[pg.quorum - 1])
            if primary not in up:
                winner = _race_winner(raft, has, up, rng)
                if winner is None:
                    continue
                assert has[winner] >= acked, (mode, tick, raft, has, winner, acked)
                assert st.release_lease(state, primary, lease["instance_id"], lease["version"])
                assert st.acquire_lease(state, winner, f"i-{winner}", lease["version"], lease["revision"],
                                        5.0, False, f"r{tick}", 0.0, inherit=True)
                primary, pg, switch = winner, None, has[winner]
                for m in names:
                    has[m] = min(has[m], has[winner])  # rewound onto the new history


def _promotable(raft: SyncSet, have_all: set[str], reachable: set[str]) -> set[str]:
    """Members the race rule lets promote, given which members hold every acknowledged commit."""
    if raft.empty or raft.quorum <= 0:
        return set(reachable)
    needed = len(raft.members) - raft.quorum + 1
    result = set()
    for me in raft.members & reachable:
        seen = raft.members & reachable
        if len(seen) >= needed and (me in have_all or not (seen & have_all)):
            result.add(me)
    return result


def test_model_check_invariant_holds_through_random_transitions() -> None:
    """Drive the planner through random candidate changes; after every single step, PostgreSQL's
    guarantee must be covered by Raft's (the invariant that makes promotion safe)."""
    rng = random.Random(5)
    names = ["a", "b", "c", "d"]
    for mode in ("on", "quorum"):
        raft, pg, switch = ASYNC, None, 0
        flushed: dict[str, int] = {}
        lsn = 0
        for _ in range(400):
            lsn += rng.randint(0, 5)
            cands = [Candidate(n, lsn) for n in names if rng.random() < 0.7]
            for c in cands:
                flushed[c.name] = lsn if rng.random() < 0.8 else flushed.get(c.name, 0)
            target = target_set(mode, rng.randint(1, 3), rng.random() < 0.3, cands, raft)
            step = next_step(raft, pg, target, flushed, switch)
            if step is None:
                continue
            if step.raft is not None:
                raft = step.raft
            else:
                pg, switch = step.postgres, lsn
            # Going asynchronous (non-strict, no standby) publishes "no guarantee" first, on purpose.
            if pg is not None and not (raft.empty and target is not None and target.empty):
                assert raft.covers(pg), (mode, raft, pg)
            going_async = raft.empty and target is not None and target.empty
            if pg is not None and not pg.empty and not going_async:
                assert raft.quorum > 0, "PostgreSQL counts on a set while Raft lets anyone promote"


def test_covering_means_every_ack_set_meets_every_promotion_set() -> None:
    """Brute force: when Raft covers PostgreSQL, any quorum PostgreSQL may count intersects the set
    of members a promotion must have seen."""
    names = ["a", "b", "c", "d"]
    for r_size in range(1, 5):
        for raft_members in itertools.combinations(names, r_size):
            for rk in range(1, r_size + 1):
                raft = SyncSet(frozenset(raft_members), rk)
                for p_size in range(1, r_size + 1):
                    for pg_members in itertools.combinations(raft_members, p_size):
                        for pk in range(rk, p_size + 1):
                            pg = SyncSet(frozenset(pg_members), pk)
                            assert raft.covers(pg)
                            needed = len(raft.members) - raft.quorum + 1
                            for acked in itertools.combinations(sorted(pg.members), pg.quorum):
                                for seen in itertools.combinations(sorted(raft.members), needed):
                                    assert set(acked) & set(seen), (raft, pg, acked, seen)


# --- decide() emits the steps ---------------------------------------------------------------------

def _cluster(sync: SyncState, **config: Any) -> ClusterView:
    members = {
        "node1": MemberView("node1", role="primary", state="running"),
        "node2": MemberView("node2", role="replica", state="running"),
        "node3": MemberView("node3", role="replica", state="running", tags=Tags(nosync=True)),
        "node4": MemberView("node4", role="replica", state="creating replica"),
    }
    return ClusterView(system_identifier="1", lease=LeaseView("node1", "i1", 2, 5, 5.0, False),
                       members=MappingProxyType(members), config=DynamicConfig(use_slots=False, **config),
                       sync=sync)


def _primary(**kw: Any) -> LocalView:
    return LocalView(name="node1", instance_id="i1", now=10.0, wall_now=0.0, tags=Tags(),
                     data_dir=DataDirState.INITIALIZED, role=PgRole.PRIMARY, lease_deadline=14.0, lsn=500, **kw)


def test_decide_widens_raft_for_a_new_standby() -> None:
    local = _primary(postgres_sync=ASYNC, standbys=MappingProxyType({"node2": 500, "node3": 500, "node4": 1}))
    actions = decide(_cluster(SyncState("node1"), synchronous_mode="on"), local)
    assert [type(a) for a in actions] == [A.RenewLease, A.SetRaftSync]
    step = actions[1]
    # Coming from asynchronous commits: the target itself is published, then PostgreSQL is set.
    assert isinstance(step, A.SetRaftSync) and step.members == frozenset({"node2"}) and step.quorum == 1


def test_decide_sets_postgres_after_raft() -> None:
    local = _primary(postgres_sync=None, standbys=MappingProxyType({"node2": 500}))
    actions = decide(_cluster(SyncState("node1", frozenset({"node2"}), 1), synchronous_mode="quorum"), local)
    step = actions[1]
    assert isinstance(step, A.SetPostgresSync) and step.members == frozenset({"node2"})


def test_decide_nothing_when_converged_or_off() -> None:
    local = _primary(postgres_sync=s("node2"), standbys=MappingProxyType({"node2": 500}))
    assert [type(a) for a in decide(_cluster(SyncState("node1", frozenset({"node2"}), 1),
                                             synchronous_mode="on"), local)] == [A.RenewLease]
    assert [type(a) for a in decide(_cluster(SyncState("node1"), synchronous_mode="off"),
                                    _primary())] == [A.RenewLease]


def test_decide_waits_for_flush_before_narrowing() -> None:
    local = _primary(postgres_sync=s("node2"), standbys=MappingProxyType({"node2": 400}), sync_switch_lsn=450)
    sync = SyncState("node1", frozenset({"node2", "node3"}), 1)
    assert [type(a) for a in decide(_cluster(sync, synchronous_mode="on"), local)] == [A.RenewLease]
    caught_up = _primary(postgres_sync=s("node2"), standbys=MappingProxyType({"node2": 450}), sync_switch_lsn=450)
    step = decide(_cluster(sync, synchronous_mode="on"), caught_up)[1]
    assert isinstance(step, A.SetRaftSync) and step.members == frozenset({"node2"})


def test_decide_unknown_switch_point_uses_our_position() -> None:
    behind = _primary(postgres_sync=s("node2"), standbys=MappingProxyType({"node2": 499}))
    sync = SyncState("node1", frozenset({"node2", "node3"}), 1)
    assert [type(a) for a in decide(_cluster(sync, synchronous_mode="on"), behind)] == [A.RenewLease]


def test_decide_mode_off_unwinds_sync() -> None:
    local = _primary(postgres_sync=s("node2"), standbys=MappingProxyType({"node2": 500}))
    step = decide(_cluster(SyncState("node1", frozenset({"node2"}), 1), synchronous_mode="off"), local)[1]
    # Raft first: a primary cut off from Raft keeps blocking.
    assert isinstance(step, A.SetRaftSync) and step.members == frozenset()


# --- bounded fallback to asynchronous commits (rule 5) -------------------------------------------

@pytest.mark.parametrize(
    ("previous", "primary", "has_candidates", "expected"),
    [
        pytest.param(None, False, False, None, id="not-primary-no-wait"),
        pytest.param(3.0, False, False, None, id="demoted-forgets-wait"),
        pytest.param(3.0, True, True, None, id="candidate-ends-wait"),
        pytest.param(None, True, False, 10.0, id="start-or-promotion-begins-wait"),
        pytest.param(3.0, True, False, 3.0, id="wait-goes-on"),
    ],
)
def test_sync_wait_since(previous: float | None, primary: bool, has_candidates: bool,
                         expected: float | None) -> None:
    assert sync_wait_since(previous, primary=primary, has_candidates=has_candidates, now=10.0) == expected


@pytest.mark.parametrize(
    ("since", "now", "timeout", "expected"),
    [
        pytest.param(None, 10.0, 5.0, False, id="not-recorded-yet-begins-now"),
        pytest.param(None, 10.0, 0.0, True, id="timeout-zero-falls-back-at-once"),
        pytest.param(6.0, 10.0, 5.0, False, id="4s-of-5s"),
        pytest.param(5.0, 10.0, 5.0, True, id="exactly-5s"),
        pytest.param(1.0, 10.0, 5.0, True, id="9s-of-5s"),
    ],
)
def test_may_fall_back(since: float | None, now: float, timeout: float, expected: bool) -> None:
    assert may_fall_back(since, now, timeout) is expected


def test_target_set_keeps_blocking_until_the_fallback_is_due() -> None:
    assert target_set("quorum", 1, False, [], s("a"), fall_back=False) is None
    assert target_set("quorum", 1, False, [], s("a"), fall_back=True) == ASYNC
    assert target_set("on", 1, True, [], s("a"), fall_back=True) is None, "strict never falls back"
    assert target_set("off", 1, False, [], s("a"), fall_back=False) == ASYNC, "mode off is asynchronous anyway"


def _fallback_step(since: float | None, now: float, postgres: SyncSet | None, raft: SyncState,
                   **config: Any) -> list[A.Action]:
    local = replace(_primary(postgres_sync=postgres, sync_waiting_since=since), now=now, lease_deadline=now + 4)
    return decide(_cluster(raft, synchronous_mode="quorum", **config), local)


@pytest.mark.parametrize(
    ("since", "now", "postgres", "raft", "config", "expected"),
    [
        # A freshly promoted primary blocks (BLOCKING) and its standbys have not reconnected yet.
        pytest.param(10.0, 10.0, None, SyncState("node1"), {"ttl": 5.0}, [A.RenewLease, A.Idle],
                     id="promoted-waits-first-cycle"),
        pytest.param(10.0, 14.9, None, SyncState("node1"), {"ttl": 5.0}, [A.RenewLease, A.Idle],
                     id="promoted-still-waits-before-ttl"),
        pytest.param(10.0, 15.0, None, SyncState("node1"), {"ttl": 5.0}, [A.RenewLease, A.SetPostgresSync, A.Idle],
                     id="promoted-falls-back-after-ttl"),
        pytest.param(10.0, 15.0, None, SyncState("node1"), {"ttl": 5.0, "synchronous_fallback_timeout": 8.0},
                     [A.RenewLease, A.Idle], id="explicit-timeout-overrides-ttl"),
        pytest.param(10.0, 18.0, None, SyncState("node1"), {"ttl": 5.0, "synchronous_fallback_timeout": 8.0},
                     [A.RenewLease, A.SetPostgresSync, A.Idle], id="explicit-timeout-reached"),
        # The only synchronous standby dropped: commits keep waiting for it for the timeout.
        pytest.param(10.0, 12.0, s("node2"), SyncState("node1", frozenset({"node2"}), 1), {"ttl": 5.0},
                     [A.RenewLease, A.Idle], id="standby-dropped-keeps-blocking"),
        pytest.param(10.0, 15.0, s("node2"), SyncState("node1", frozenset({"node2"}), 1), {"ttl": 5.0},
                     [A.RenewLease, A.SetRaftSync, A.Idle], id="standby-gone-falls-back"),
        pytest.param(10.0, 16.0, s("node2"), SyncState("node1"), {"ttl": 5.0},
                     [A.RenewLease, A.SetPostgresSync, A.Idle], id="then-postgres-goes-async"),
        pytest.param(10.0, 30.0, ASYNC, SyncState("node1"), {"ttl": 5.0}, [A.RenewLease],
                     id="already-asynchronous-nothing-to-say"),
        pytest.param(10.0, 30.0, None, SyncState("node1"), {"ttl": 5.0, "synchronous_mode_strict": True},
                     [A.RenewLease], id="strict-blocks-forever"),
    ],
)
def test_fallback_timing(since: float | None, now: float, postgres: SyncSet | None, raft: SyncState,
                         config: dict[str, Any], expected: list[type]) -> None:
    actions = _fallback_step(since, now, postgres, raft, **config)
    assert [type(a) for a in actions] == expected
    idle = [a for a in actions if isinstance(a, A.Idle)]
    if A.SetRaftSync in expected or A.SetPostgresSync in expected:
        assert idle[0].warning and "running asynchronously" in idle[0].reason
    elif idle:
        assert not idle[0].warning and "commits stay blocked up to" in idle[0].reason


def test_fallback_step_sets_asynchronous() -> None:
    raft_step = _fallback_step(10.0, 15.0, s("node2"), SyncState("node1", frozenset({"node2"}), 1), ttl=5.0)[1]
    assert isinstance(raft_step, A.SetRaftSync) and raft_step.members == frozenset() and raft_step.quorum == 0
    pg_step = _fallback_step(10.0, 16.0, s("node2"), SyncState("node1"), ttl=5.0)[1]
    assert isinstance(pg_step, A.SetPostgresSync) and pg_step.members == frozenset()


def test_mode_off_unwinding_is_no_fallback_warning() -> None:
    local = _primary(postgres_sync=s("node2"), sync_waiting_since=1.0)
    actions = decide(_cluster(SyncState("node1", frozenset({"node2"}), 1), synchronous_mode="off"), local)
    assert [type(a) for a in actions] == [A.RenewLease, A.SetRaftSync]
