"""The pure rules of `ctl rolling-restart`: refusals, the switchover candidate, resumable state."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from raftpg.cli.ctl.model import ClusterView, MemberView
from raftpg.cli.ctl.rolling_plan import RunState, load_state, refusal, save_state, switchover_candidate


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
    state = RunState("demo", "a", MappingProxyType({"a": 100.0, "b": 200.0}))
    assert not state.done("a", 100.0)
    assert state.done("a", 150.0)
    assert not state.done("b", None)
    assert not state.done("new-member", 5.0)


def test_a_daemon_is_done_when_its_raftpg_process_start_time_changed() -> None:
    state = RunState("demo", "a", MappingProxyType({"a": 100.0}), MappingProxyType({"a": 7.0}))
    assert not state.daemon_done("a", 7.0) and not state.daemon_done("a", None)
    assert state.daemon_done("a", 9.5)
    assert not RunState("demo", "a").daemon_done("a", 9.5)


def test_state_round_trips_and_ignores_other_scopes_and_junk(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    state = RunState("demo", "a", MappingProxyType({"a": 1.5, "b": 2.5}), MappingProxyType({"a": 9.0}))
    save_state(path, state)
    loaded = load_state(path, "demo")
    assert loaded is not None and loaded.old_primary == "a" and dict(loaded.started) == {"a": 1.5, "b": 2.5}
    assert dict(loaded.daemons) == {"a": 9.0}
    assert load_state(path, "other") is None
    path.write_text("{not json")
    assert load_state(path, "demo") is None
    assert load_state(tmp_path / "missing.json", "demo") is None
