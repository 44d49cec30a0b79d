"""The rules of `ctl rolling-restart`: refusals, the switchover candidate, the run's record in Raft
(its plan, progress, owner and heartbeat) and compare-and-set writes against an in-memory API."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from raftpg.cli.ctl.client import ApiClient, CtlError, Response, Unreachable
from raftpg.cli.ctl.model import ClusterView, MemberView
from raftpg.cli.ctl.rolling_plan import (
    CLUSTER,
    STALE_AFTER,
    Action,
    Owner,
    Planned,
    RunState,
    alive_refusal,
    plan,
    refusal,
    switchover_candidate,
    voters_away,
    witness_in_raft,
)
from raftpg.cli.ctl.rolling_record import RunRecord, Stored, TakenOver
from raftpg.cli.ctl.session import Session

T0 = 1_796_000_000.0  # Unix seconds in 2026


def member(name: str, role: str = "replica", lag: int | str | None = 0, **tags: object) -> MemberView:
    return MemberView(name=name, role=role, state="running", api_url=f"http://{name}:8008",
                      replay_lag=lag, tags=MappingProxyType(dict(tags)))


def cluster(*members: MemberView, paused: bool = False, scheduled: bool = False) -> ClusterView:
    return ClusterView("demo", members, paused=paused,
                       scheduled_switchover=MappingProxyType({"at": "x"}) if scheduled else None)


HEALTHY = (member("a", "leader"), member("b"), member("c"))
STREAMING = {"b": True, "c": True}


def test_a_healthy_cluster_is_accepted() -> None:
    assert refusal(cluster(*HEALTHY), STREAMING, 100) is None


def test_refusals_name_the_reason() -> None:
    assert "no primary" in (refusal(cluster(member("b"), member("c")), STREAMING, 100) or "")
    assert "not streaming" in (refusal(cluster(*HEALTHY), {"b": True, "c": False}, 100) or "")
    lagging = cluster(member("a", "leader"), member("b", lag=500), member("c"))
    assert "lags 500 bytes" in (refusal(lagging, STREAMING, 100) or "")
    unknown = cluster(member("a", "leader"), member("b", lag="unknown"), member("c"))
    assert "unknown" in (refusal(unknown, STREAMING, 100) or "")
    assert "scheduled" in (refusal(cluster(*HEALTHY, scheduled=True), STREAMING, 100) or "")
    assert "already paused" in (refusal(cluster(*HEALTHY, paused=True), STREAMING, 100) or "")


def test_candidate_prefers_a_synchronous_standby_then_the_least_lag() -> None:
    view = cluster(member("a", "leader"), member("b", lag=10), member("c", lag=5), member("d", "sync_standby", 90))
    found = switchover_candidate(view, "a")
    assert found is not None and found.name == "d"
    found = switchover_candidate(cluster(member("b", lag=10), member("c", lag=5)), "a")
    assert found is not None and found.name == "c"


def test_candidate_skips_nofailover_and_the_excluded_member() -> None:
    view = cluster(member("a", "leader"), member("b", nofailover=True), member("c"))
    found = switchover_candidate(view, "c")
    assert found is None
    found = switchover_candidate(view, "a")
    assert found is not None and found.name == "c"


def test_done_means_a_new_postmaster_start_time() -> None:
    state = RunState("a", MappingProxyType({"a": 100.0, "b": 200.0}))
    assert not state.restarted("a", 100.0)
    assert state.restarted("a", 150.0)
    assert not state.restarted("b", None)
    assert not state.restarted("new-member", 5.0)


def test_a_daemon_is_done_when_its_raftpg_process_start_time_changed() -> None:
    state = RunState("a", MappingProxyType({"a": 100.0}), MappingProxyType({"a": 7.0}))
    assert state.daemon and not RunState("a").daemon
    assert not state.daemon_done("a", 7.0) and not state.daemon_done("a", None)
    assert state.daemon_done("a", 9.5)
    assert not RunState("a").daemon_done("a", 9.5)


RUN = RunState("a", MappingProxyType({"a": 1.5, "b": 2.5}), MappingProxyType({"a": 9.0}),
               owner=Owner("host1", 42), began_at=T0, heartbeat_at=T0)


def test_the_record_round_trips_and_junk_is_refused() -> None:
    state = RUN.beat(T0 + 5, "b: restart PostgreSQL").finished("b: restart PostgreSQL", T0 + 9)
    assert RunState.from_record(json.loads(json.dumps(state.to_record()))) == state
    assert state.done == ("b: restart PostgreSQL",) and state.step == "" and state.heartbeat_at == T0 + 9
    assert RunState.from_record({**state.to_record(), "version": 99}) is None
    assert RunState.from_record({**state.to_record(), "started": {"a": "soon"}}) is None
    assert RunState.from_record({**state.to_record(), "owner": "host1"}) is None
    assert RunState.from_record({"version": 1}) is None


def test_a_live_run_is_refused_naming_its_owner_until_stale_or_taken_over() -> None:
    why = alive_refusal(RUN, T0 + 3, take_over=False)
    assert why is not None and "host1 (pid 42)" in why and "2026" in why and "--take-over" in why
    assert alive_refusal(RUN, T0 + 3, take_over=True) is None
    assert alive_refusal(RUN, T0 + STALE_AFTER, take_over=False) is None


def test_a_halted_run_is_continued_at_once_and_taking_over_clears_the_halt() -> None:
    halted = RUN.beat(T0 + 1, "b: restart PostgreSQL").halt("b: not seen within 180s")
    assert alive_refusal(halted, T0 + 2, take_over=False) is None
    assert halted.step == "" and "stopped by host1 (pid 42): b: not seen" in halted.describe(T0 + 2)
    mine = halted.taken_over(Owner("host2", 7), T0 + 2)
    assert mine.halted == "" and mine.owner == Owner("host2", 7) and mine.began_at == T0
    assert mine.started == RUN.started and alive_refusal(mine, T0 + 3, take_over=False) is not None


class CasApi(ApiClient):
    """The API's record as compare-and-set, in memory; `lose` drops the answer of that many PUTs
    after applying them, `down` lists base URLs that do not answer."""

    def __init__(self) -> None:
        super().__init__()
        self.revision = 0
        self.record: Any = None
        self.lose = 0
        self.down: set[str] = set()
        self.puts: list[str] = []

    def request(self, method: str, url: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response:
        base = url.split("/operations/")[0]
        if base in self.down:
            raise Unreachable(f"{url}: connection refused")
        if method == "GET":
            return Response(200, {"name": "rolling_restart", "revision": self.revision, "record": self.record})
        self.puts.append(base)
        if body["expected_revision"] != self.revision:
            return Response(409, {"error": "moved", "revision": self.revision, "record": self.record})
        self.revision += 1
        self.record = body["record"]
        if self.lose:
            self.lose -= 1
            raise Unreachable(f"{url}: timed out")
        return Response(200, {"name": "rolling_restart", "revision": self.revision, "record": self.record})


def record_on(api: CasApi, now: float = T0) -> RunRecord:
    session = Session(api, ["http://m1:8008"], interactive=False)
    record = RunRecord(session, wall_clock=lambda: now)
    record.remember(cluster(MemberView("m1", "leader", "running", api_url="http://m1:8008"),
                            MemberView("m2", "replica", "running", api_url="http://m2:8008")))
    return record


def test_a_run_is_written_read_back_by_another_ctl_and_ended() -> None:
    api = CasApi()
    mine = record_on(api)
    assert mine.read().state() is None
    mine.write(RUN)
    other = record_on(api)
    assert other.read().state() == RUN and other.revision == 1
    mine.write(None)
    assert record_on(api).read() == Stored(2, None)


def test_a_ctl_that_was_taken_over_stops_at_its_next_write() -> None:
    api = CasApi()
    mine = record_on(api)
    mine.read()
    mine.write(RUN)
    other = record_on(api, T0 + 60)
    other.write(other.read().state().taken_over(Owner("host2", 7), T0 + 60))  # type: ignore[union-attr]
    with pytest.raises(TakenOver, match="host2"):
        mine.write(RUN.finished("b: restart PostgreSQL", T0 + 61))
    with pytest.raises(TakenOver):
        mine.beat("c: restart PostgreSQL")


def test_a_lost_answer_is_resolved_by_the_next_member_and_a_dead_member_is_skipped() -> None:
    api = CasApi()
    mine = record_on(api)
    mine.read()
    api.lose = 1
    mine.write(RUN)  # applied, answer lost: m2 answers 409 with exactly this record -> it landed
    assert mine.revision == 1 and api.puts == ["http://m1:8008", "http://m2:8008"]
    api.down = {"http://m1:8008"}
    mine.write(None)
    assert (api.revision, api.record) == (2, None)


def test_a_step_must_be_stored_and_releasing_the_run_is_best_effort() -> None:
    api = CasApi()
    mine = record_on(api)
    mine.read()
    mine.write(RUN)
    api.down = {"http://m1:8008", "http://m2:8008"}
    with pytest.raises(CtlError, match="could not store"):
        mine.beat("b: restart PostgreSQL")
    mine.release("^C")  # nobody answers: the heartbeat ages out instead
    api.down = set()
    mine.release("b: not seen within 180s")
    stored = record_on(api).read().state()
    assert stored is not None and stored.halted == "b: not seen within 180s"


# -- the plan: order, witnesses, one Raft vote away at a time -----------------------------------

TIMES = MappingProxyType({"node1": 1.0, "node2": 2.0, "node3": 3.0})
DAEMONS = MappingProxyType({"node1": 7.0, "node2": 8.0, "node3": 9.0, "witness1": 5.0})


def test_plan_without_daemon_restarts_postgresql_only_and_leaves_witnesses_out() -> None:
    steps = [(p.member, p.action) for p in plan(RunState("node1", TIMES))]
    assert steps == [
        (CLUSTER, Action.PAUSE),
        ("node2", Action.RESTART_POSTGRES), ("node3", Action.RESTART_POSTGRES),
        ("node1", Action.SWITCHOVER), (CLUSTER, Action.RESUME), ("node1", Action.REJOIN),
    ]


def test_plan_with_daemon_replaces_the_witness_first_then_each_database_member() -> None:
    state = RunState("node1", TIMES, DAEMONS)
    assert state.witnesses == ("witness1",) and state.replicas == ("node2", "node3")
    steps = [(p.member, p.action) for p in plan(state)]
    assert steps == [
        (CLUSTER, Action.PAUSE),
        ("witness1", Action.WITNESS_RAFTPG),
        ("node2", Action.RESTART_POSTGRES), ("node2", Action.RESTART_RAFTPG),
        ("node3", Action.RESTART_POSTGRES), ("node3", Action.RESTART_RAFTPG),
        ("node1", Action.PRIMARY_RAFTPG),
        ("node1", Action.SWITCHOVER), (CLUSTER, Action.RESUME), ("node1", Action.REJOIN),
    ]


def test_every_raftpg_is_replaced_once_in_its_own_step() -> None:
    """One step per raftpg, each its own member: the run waits for one to be back before the
    next, so a witness is never away from Raft together with another member."""
    state = RunState("node2", MappingProxyType({"node1": 1.0, "node2": 2.0}),
                     MappingProxyType({"node1": 1.0, "node2": 2.0, "w1": 3.0, "w2": 4.0}))
    daemon_steps = [p for p in plan(state)
                    if p.action in (Action.WITNESS_RAFTPG, Action.RESTART_RAFTPG, Action.PRIMARY_RAFTPG)]
    assert [p.member for p in daemon_steps] == ["w1", "w2", "node1", "node2"]
    assert plan(state)[:3] == (Planned(CLUSTER, Action.PAUSE), Planned("w1", Action.WITNESS_RAFTPG),
                               Planned("w2", Action.WITNESS_RAFTPG))


def test_the_witnesses_survive_the_record_and_an_older_record_has_none() -> None:
    state = RunState("node1", TIMES, DAEMONS, owner=Owner("host1", 42), began_at=T0, heartbeat_at=T0)
    again = RunState.from_record(json.loads(json.dumps(state.to_record())))
    assert again is not None and again.witnesses == ("witness1",)
    older = RunState("node1", TIMES, MappingProxyType({k: v for k, v in DAEMONS.items() if k != "witness1"}))
    assert older.witnesses == () and Action.WITNESS_RAFTPG not in {p.action for p in plan(older)}


def patroni(role: str = "witness", state: str = "running", has_quorum: object = True,
            partners: object = None) -> dict[str, Any]:
    raft = {"has_quorum": has_quorum, "partners": {"10.0.0.11:5010": True, "10.0.0.12:5010": True}
            if partners is None else partners}
    return {"role": role, "state": state, "raftpg": {"raft": raft}}


def test_a_witness_is_back_once_running_with_a_raft_majority() -> None:
    assert witness_in_raft(patroni())
    assert not witness_in_raft(patroni(state="starting"))
    assert not witness_in_raft(patroni(has_quorum=False))
    assert not witness_in_raft(patroni(role="replica"))
    assert not witness_in_raft({"role": "witness", "state": "running"})  # no Raft fields: cannot tell


def test_a_raftpg_is_restarted_only_while_every_other_voter_is_connected() -> None:
    assert voters_away(patroni()) == ()
    assert voters_away(patroni(partners={"10.0.0.11:5010": True, "10.0.0.13:5010": False})) == ("10.0.0.13:5010",)
    assert voters_away(patroni(partners={})) == ("unknown",)
    assert voters_away({"role": "replica"}) == ("unknown",)
