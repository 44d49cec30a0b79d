"""The pure replicated state machine and the unknown-outcome resolvers."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from raftpg.consensus import Lease
from raftpg.consensus import state as st
from raftpg.consensus.outcome import resolver_for

pytestmark = pytest.mark.unit


def held(name: str = "a", instance_id: str = "ia", ttl: float = 3.0) -> st.State:
    state = st.initial_state()
    assert st.acquire_lease(state, name, instance_id, 0, 0, ttl, False, "r-acq", 1000.0)
    return state


def lease_of(state: st.State) -> dict[str, Any]:
    return dict(state["lease"])


# ------------------------------------------------------------------ lease


def test_acquire_sets_holder_and_bumps_version_and_revision() -> None:
    state = st.initial_state()
    assert st.acquire_lease(state, "a", "ia", 0, 0, 3.0, True, "r1", 1234.5)
    assert lease_of(state) == {
        "holder": "a",
        "instance_id": "ia",
        "version": 1,
        "revision": 1,
        "ttl": 3.0,
        "lsn_at_handover": None,
        "bootstrapping": True,
        "request_id": "r1",
        "acquired_wall": 1234.5,
    }


@pytest.mark.parametrize(("version", "revision"), [(1, 0), (0, 1), (5, 5)])
def test_acquire_cas_fails_on_any_mismatch(version: int, revision: int) -> None:
    state = st.initial_state()
    before = json.dumps(state, sort_keys=True)
    assert not st.acquire_lease(state, "a", "ia", version, revision, 3.0, False, "r1", 0.0)
    assert json.dumps(state, sort_keys=True) == before


def test_renewal_after_the_acquirer_looked_makes_the_stale_acquire_fail() -> None:
    state = held()
    seen_version, seen_revision = state["lease"]["version"], state["lease"]["revision"]
    assert st.renew_lease(state, "a", "ia", seen_version, 3.0, "r-renew")
    assert state["lease"]["version"] == seen_version  # same holder: the fencing token stays
    assert state["lease"]["revision"] == seen_revision + 1
    assert not st.acquire_lease(state, "b", "ib", seen_version, seen_revision, 3.0, False, "r-b", 0.0)
    assert state["lease"]["holder"] == "a"


def test_acquire_keeps_the_sync_record_of_earlier_commits() -> None:
    """The record says where the commits acknowledged so far lie; a new holder does not change that."""
    state = held()
    assert st.set_sync(state, "a", "ia", 1, {"members": ["b", "c"], "quorum": 1})
    assert st.release_lease(state, "a", "ia", 1)
    assert state["sync"]["members"] == ["b", "c"]
    assert st.acquire_lease(state, "b", "ib", 2, 2, 3.0, False, "r-b", 0.0, inherit=True)
    assert state["sync"] == {"leader": "b", "members": ["b", "c"], "quorum": 1}


def test_an_acquire_written_by_an_older_release_replays_as_it_applied_then() -> None:
    state = held()
    assert st.set_sync(state, "a", "ia", 1, {"members": ["b", "c"], "quorum": 1})
    assert st.handover_lease(state, "a", "ia", 1, "b", "ib", 0x3000060, "r-h")
    assert state["sync"] == {"leader": "b", "members": []}
    assert st.acquire_lease(state, "b", "ib-restarted", 2, 2, 3.0, False, "r-b", 0.0)
    assert state["sync"] == {"leader": "b", "members": []}
    assert state["lease"]["lsn_at_handover"] is None


def test_acquire_over_a_corrupt_sync_record_starts_an_empty_one() -> None:
    state = held()
    state["sync"] = "garbage"
    assert st.release_lease(state, "a", "ia", 1)
    assert st.acquire_lease(state, "b", "ib", 2, 2, 3.0, False, "r-b", 0.0, inherit=True)
    assert state["sync"] == {"leader": "b", "members": []}


def test_a_reclaim_by_the_hand_over_target_keeps_the_hand_over_lsn() -> None:
    """A switchover target killed before it promoted and restarted (new instance id) still owes the
    old primary's shutdown checkpoint; a different member taking the lease does not."""
    state = held()
    assert st.handover_lease(state, "a", "ia", 1, "b", "ib", 0x3000060, "r-h", both_hold_all=True)
    assert st.acquire_lease(state, "b", "ib-restarted", 2, 2, 3.0, False, "r-b", 0.0, inherit=True)
    assert state["lease"]["lsn_at_handover"] == 0x3000060
    assert st.release_lease(state, "b", "ib-restarted", 3)
    assert state["lease"]["lsn_at_handover"] is None
    assert st.handover_lease(state, "a", "ia", 1, "b", "ib", 0x3000060, "r-h") is False
    state2 = held()
    assert st.handover_lease(state2, "a", "ia", 1, "b", "ib", 0x3000060, "r-h", both_hold_all=True)
    assert st.acquire_lease(state2, "c", "ic", 2, 2, 3.0, False, "r-c", 0.0, inherit=True)
    assert state2["lease"]["lsn_at_handover"] is None


def test_renew_can_clear_bootstrapping_but_never_set_it() -> None:
    state = st.initial_state()
    assert st.acquire_lease(state, "a", "ia", 0, 0, 3.0, True, "r1", 0.0)
    flags = []
    for request_id, flag in (("r2", True), ("r3", False), ("r4", True)):
        assert st.renew_lease(state, "a", "ia", 1, 3.0, request_id, bootstrapping=flag)
        flags.append(state["lease"]["bootstrapping"])
    assert flags == [True, False, False]


def test_renew_carries_its_ttl_and_request_id() -> None:
    state = held(ttl=3.0)
    assert st.renew_lease(state, "a", "ia", 1, 10.0, "r-long")
    assert state["lease"]["ttl"] == 10.0
    assert state["lease"]["request_id"] == "r-long"


def test_release_clears_holder_and_bumps_version() -> None:
    state = held()
    assert st.release_lease(state, "a", "ia", 1, "r-rel")
    lease = state["lease"]
    assert (lease["holder"], lease["instance_id"], lease["version"], lease["revision"]) == (None, None, 2, 2)
    assert lease["request_id"] == "r-rel"


def test_handover_moves_holder_records_lsn_and_both_ends_as_the_sync_record() -> None:
    """Every acknowledged commit is on the old primary (stopped cleanly) and on the target (it has
    the shutdown checkpoint): either may promote, nobody else."""
    state = held()
    assert st.set_sync(state, "a", "ia", 1, {"members": ["c"], "quorum": 1})
    assert st.handover_lease(state, "a", "ia", 1, "b", "ib", 0x3000060, "r-h", both_hold_all=True)
    lease = state["lease"]
    assert (lease["holder"], lease["instance_id"], lease["version"], lease["revision"]) == ("b", "ib", 2, 2)
    assert lease["lsn_at_handover"] == 0x3000060
    assert state["sync"] == {"leader": "b", "members": ["a", "b"], "quorum": 2}


def test_handover_without_a_checkpoint_lsn_keeps_the_sync_record() -> None:
    state = held()
    assert st.set_sync(state, "a", "ia", 1, {"members": ["b", "c"], "quorum": 1})
    assert st.handover_lease(state, "a", "ia", 1, "b", "ib", None, "r-h", both_hold_all=True)
    assert state["sync"] == {"leader": "b", "members": ["b", "c"], "quorum": 1}


@pytest.mark.parametrize(
    "op",
    ["renew", "release", "handover", "initialize", "set_sync", "append_history"],
)
@pytest.mark.parametrize(
    ("name", "instance_id", "version"),
    [("b", "ia", 1), ("a", "other-instance", 1), ("a", "ia", 0), ("a", "ia", 2)],
)
def test_holder_conditioned_commands_reject_wrong_identity(
    op: str, name: str, instance_id: str, version: int
) -> None:
    """DESIGN rule 7: a command that committed late, under another lease, changes nothing."""
    state = held()
    before = json.dumps(state, sort_keys=True)
    calls = {
        "renew": lambda: st.renew_lease(state, name, instance_id, version, 3.0, "r"),
        "release": lambda: st.release_lease(state, name, instance_id, version),
        "handover": lambda: st.handover_lease(state, name, instance_id, version, "c", "ic", None, "r"),
        "initialize": lambda: st.initialize(state, name, instance_id, version, "7000"),
        "set_sync": lambda: st.set_sync(state, name, instance_id, version, {"members": ["c"]}),
        "append_history": lambda: st.append_history(
            state, name, instance_id, version, {"request_id": "h1", "event": "x"}
        ),
    }
    assert calls[op]() is False
    assert json.dumps(state, sort_keys=True) == before


def test_no_holder_means_no_holder_commands() -> None:
    state = st.initial_state()
    assert not st.renew_lease(state, None, None, 0, 3.0, "r")  # type: ignore[arg-type]
    assert not st.initialize(state, None, None, 0, "7000")  # type: ignore[arg-type]


def test_bad_arguments_are_rejected_without_change() -> None:
    state = st.initial_state()
    before = json.dumps(state, sort_keys=True)
    assert not st.acquire_lease(state, "a", "ia", 0, 0, 0.0, False, "r", 0.0)  # ttl must be > 0
    assert not st.acquire_lease(state, "", "ia", 0, 0, 3.0, False, "r", 0.0)
    assert not st.remove_member(state, ["unhashable"])  # type: ignore[arg-type]
    assert not st.apply_command(state, {"op": "acquire_lease", "args": {"name": "a"}})
    assert not st.apply_command(state, {"op": "drop_database", "args": {}})
    assert not st.apply_command(state, "garbage")
    assert json.dumps(state, sort_keys=True) == before


def test_make_command_refuses_unknown_operations() -> None:
    with pytest.raises(ValueError, match="unknown consensus operation"):
        st.make_command("drop_database")


# ------------------------------------------------------------------ other state


def test_initialize_once_and_idempotent_for_the_same_sysid() -> None:
    state = held()
    assert st.initialize(state, "a", "ia", 1, "7000")
    assert st.initialize(state, "a", "ia", 1, "7000")
    assert not st.initialize(state, "a", "ia", 1, "8000")
    assert state["initialize"] == "7000"


def test_history_is_idempotent_by_request_id_and_bounded() -> None:
    state = held()
    assert st.append_history(state, "a", "ia", 1, {"request_id": "h0", "timeline": 1})
    assert st.append_history(state, "a", "ia", 1, {"request_id": "h0", "timeline": 1})
    assert len(state["history"]) == 1
    assert not st.append_history(state, "a", "ia", 1, {"timeline": 2})  # request_id is mandatory
    for i in range(1, st.HISTORY_LIMIT + 20):
        assert st.append_history(state, "a", "ia", 1, {"request_id": f"h{i}", "timeline": i})
    assert len(state["history"]) == st.HISTORY_LIMIT
    assert state["history"][-1]["request_id"] == f"h{st.HISTORY_LIMIT + 19}"
    assert state["history"][0]["request_id"] == "h20"


def test_config_compare_and_set() -> None:
    state = st.initial_state()
    assert st.set_config(state, {"ttl": 30}, 0)
    assert state["config_version"] == 1
    assert not st.set_config(state, {"ttl": 10}, 0)
    assert state["config"] == {"ttl": 30}
    assert st.set_config(state, {"ttl": 10}, None)
    assert (state["config"], state["config_version"]) == ({"ttl": 10}, 2)


def test_failover_set_and_clear_only_that_request() -> None:
    state = st.initial_state()
    assert st.set_failover(state, {"request_id": "f1", "leader": "a", "candidate": "b"})
    assert not st.clear_failover(state, "f0")
    assert state["failover"]["request_id"] == "f1"
    assert not st.set_failover(state, {"request_id": "f2"}, expected_request_id="f0")
    assert st.set_failover(state, {"request_id": "f2"}, expected_request_id="f1")
    assert st.clear_failover(state, "f2")
    assert state["failover"] is None and state["failover_dropped"] is None  # carried out: no reason
    assert not st.set_failover(state, {"leader": "a"})  # request_id is mandatory
    assert st.set_failover(state, None)


def test_a_request_dropped_with_a_reason_keeps_it_for_the_waiting_caller() -> None:
    state = st.initial_state()
    assert st.set_failover(state, {"request_id": "f1", "leader": "a", "candidate": "b"})
    assert not st.clear_failover(state, "f1", reason=7)  # type: ignore[arg-type]
    assert state["failover"] is not None
    assert st.clear_failover(state, "f1", reason="b is not a healthy streaming replica")
    assert state["failover_dropped"] == {"request_id": "f1", "reason": "b is not a healthy streaming replica"}
    assert st.normalize({k: v for k, v in st.initial_state().items() if k != "failover_dropped"})[
        "failover_dropped"] is None  # a dump from before this key


def test_members_publish_and_remove() -> None:
    state = st.initial_state()
    record = {"instance_id": "ia", "role": "replica", "tags": {"nofailover": False}}
    assert st.publish_member(state, "a", record)
    record["role"] = "mutated by the caller afterwards"
    assert state["members"]["a"]["role"] == "replica"
    assert st.remove_member(state, "a")
    assert not st.remove_member(state, "a")


def test_ensure_cluster_refuses_another_scope() -> None:
    state = st.initial_state()
    assert st.ensure_cluster(state, "prod")
    assert st.ensure_cluster(state, "prod")
    assert not st.ensure_cluster(state, "staging")
    assert state["cluster"] == {"scope": "prod", "schema": st.SCHEMA}


def test_normalize_fills_keys_missing_from_an_older_dump() -> None:
    old = {"schema": 1, "lease": {"holder": "a", "version": 4}, "members": {"a": {}}}
    state = st.normalize(old)
    assert state["lease"]["holder"] == "a" and state["lease"]["revision"] == 0
    assert state["history"] == [] and state["members"] == {"a": {}}
    assert st.normalize("corrupt") == st.initial_state()


# ------------------------------------------------------------------ determinism


def random_commands(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    names = ["a", "b", "c"]
    commands = []
    for i in range(count):
        name = rng.choice(names)
        iid = f"i{name}"
        v = rng.randint(0, 2)
        kind = rng.randrange(9)
        if kind == 0:
            cmd = st.make_command("acquire_lease", name=name, instance_id=iid, expected_version=v,
                                  expected_revision=rng.randint(0, 2), ttl=3.0, bootstrapping=False,
                                  request_id=f"r{i}", wall_time=float(i))
        elif kind == 1:
            cmd = st.make_command("renew_lease", name=name, instance_id=iid, version=v, ttl=3.0,
                                  request_id=f"r{i}")
        elif kind == 2:
            cmd = st.make_command("release_lease", name=name, instance_id=iid, version=v)
        elif kind == 3:
            cmd = st.make_command("handover_lease", name=name, instance_id=iid, version=v,
                                  to_name=rng.choice(names), to_instance_id="ix", lsn=i, request_id=f"r{i}")
        elif kind == 4:
            cmd = st.make_command("publish_member", name=name, record={"instance_id": iid, "lsn": i})
        elif kind == 5:
            cmd = st.make_command("append_history", name=name, instance_id=iid, version=v,
                                  entry={"request_id": f"h{i % 7}", "n": i})
        elif kind == 6:
            cmd = st.make_command("set_config", config={"n": i}, expected_version=rng.choice([None, v]))
        elif kind == 7:
            cmd = st.make_command("set_sync", name=name, instance_id=iid, version=v, sync={"members": [name]})
        else:
            cmd = st.make_command("set_failover", request={"request_id": f"f{i}"})
        commands.append(cmd)
    return commands


def test_same_commands_give_identical_state_and_results() -> None:
    commands = random_commands(seed=7, count=500)
    a, b = st.initial_state(), st.initial_state()
    results_a = [st.apply_command(a, c) for c in commands]
    results_b = [st.apply_command(b, json.loads(json.dumps(c))) for c in commands]
    assert results_a == results_b
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert any(results_a) and not all(results_a)
    assert a["lease"]["revision"] > 0


def test_state_holds_only_json_primitives() -> None:
    state = st.initial_state()
    for command in random_commands(seed=11, count=300):
        st.apply_command(state, command)
    assert json.loads(json.dumps(state, allow_nan=False)) == state


# ------------------------------------------------------------------ Lease expiry (fake clock)


def make_lease(holder: str | None, applied_at: float, ttl: float) -> Lease:
    return Lease(holder=holder, instance_id="i" if holder else None, version=1, revision=1, ttl=ttl,
                 lsn_at_handover=None, bootstrapping=False, applied_at=applied_at)


def test_lease_expires_ttl_after_this_node_applied_it() -> None:
    lease = make_lease("a", applied_at=100.0, ttl=3.0)
    assert lease.expires_at() == 103.0
    assert not lease.expired(100.0)
    assert not lease.expired(102.999)
    assert lease.expired(103.0)
    assert lease.expired(500.0)


def test_no_holder_is_always_expired() -> None:
    assert make_lease(None, applied_at=100.0, ttl=3.0).expired(100.0)


# ------------------------------------------------------------------ unknown-outcome resolvers


def test_acquire_resolver() -> None:
    state = st.initial_state()
    cmd = st.make_command("acquire_lease", name="a", instance_id="ia", expected_version=0,
                          expected_revision=0, ttl=3.0, bootstrapping=False, request_id="mine",
                          wall_time=0.0)
    resolve = resolver_for(cmd)
    assert resolve(state) is None  # not applied yet, may still apply
    assert st.apply_command(state, cmd)
    assert resolve(state) is True
    other = st.initial_state()
    assert st.acquire_lease(other, "b", "ib", 0, 0, 3.0, False, "theirs", 0.0)
    assert resolve(other) is False  # (version, revision) moved on: ours can never apply


def test_renew_resolver_needs_our_request_id() -> None:
    state = held()
    cmd = st.make_command("renew_lease", name="a", instance_id="ia", version=1, ttl=3.0, request_id="mine")
    resolve = resolver_for(cmd)
    assert resolve(state) is None  # still ours, but this renewal is not known to have committed
    assert st.apply_command(state, cmd)
    assert resolve(state) is True
    assert st.release_lease(state, "a", "ia", 1, "rel")
    assert resolve(state) is False


def test_holder_resolvers_on_a_replica_behind_the_lease_cannot_tell() -> None:
    """A replica that has not applied the acquire yet is behind, not past it: no verdict."""
    lagging = st.initial_state()
    for op, extra in (("renew_lease", {"ttl": 3.0, "request_id": "r"}), ("release_lease", {"request_id": "r"}),
                      ("append_history", {"entry": {"request_id": "h"}})):
        cmd = st.make_command(op, name="a", instance_id="ia", version=1, **extra)
        assert resolver_for(cmd)(lagging) is None, op
        assert resolver_for(cmd)(held("b", "ib")) is False, op  # version 1 is someone else's: gone


def test_history_config_failover_and_idempotent_resolvers() -> None:
    state = held()
    hist = st.make_command("append_history", name="a", instance_id="ia", version=1,
                           entry={"request_id": "h1"})
    assert resolver_for(hist)(state) is None
    st.apply_command(state, hist)
    assert resolver_for(hist)(state) is True

    cfg = st.make_command("set_config", config={"x": 1}, expected_version=0)
    assert resolver_for(cfg)(state) is None
    st.apply_command(state, cfg)
    assert resolver_for(cfg)(state) is True
    assert resolver_for(st.make_command("set_config", config={"x": 2}, expected_version=0))(state) is False

    member = st.make_command("publish_member", name="a", record={"lsn": 5})
    assert resolver_for(member)(state) is None
    st.apply_command(state, member)
    assert resolver_for(member)(state) is True

    sync = st.make_command("set_sync", name="a", instance_id="ia", version=1, sync={"members": ["b"]})
    assert resolver_for(sync)(state) is None
    st.apply_command(state, sync)
    assert resolver_for(sync)(state) is True

    fo = st.make_command("set_failover", request={"request_id": "f1"})
    assert resolver_for(fo)(state) is None
    st.apply_command(state, fo)
    assert resolver_for(fo)(state) is True
    clear = st.make_command("clear_failover", request_id="f1")
    assert resolver_for(clear)(state) is None
    st.apply_command(state, clear)
    assert resolver_for(clear)(state) is True

    init = st.make_command("initialize", name="a", instance_id="ia", version=1, sysid="7000")
    assert resolver_for(init)(state) is None
    st.apply_command(state, init)
    assert resolver_for(init)(state) is True
    assert resolver_for(st.make_command("initialize", name="a", instance_id="ia", version=1,
                                        sysid="8000"))(state) is False


def test_set_operation_is_compare_and_set_and_none_ends_it() -> None:
    state = st.initial_state()
    step = {"phase": "replicas", "done": ["n2"]}
    assert st.set_operation(state, "rolling_restart", step, 0)
    assert not st.set_operation(state, "rolling_restart", {"phase": "other"}, 0), "stale revision"
    assert state["operations"]["rolling_restart"] == {"revision": 1, "record": step}
    assert st.set_operation(state, "rolling_restart", None, 1)
    assert state["operations"]["rolling_restart"] == {"revision": 2, "record": None}
    assert st.set_operation(state, "rolling_restart", {"phase": "again"}, 2)


@pytest.mark.parametrize(
    "args",
    [("", {}, 0), ("op", "not a mapping", 0), ("op", {}, "0"), ("op", {}, True)],
)
def test_set_operation_rejects_bad_arguments(args: tuple[Any, Any, Any]) -> None:
    state = st.initial_state()
    assert not st.set_operation(state, *args)
    assert state["operations"] == {}


def test_set_operation_resolver() -> None:
    state = st.initial_state()
    cmd = st.make_command("set_operation", name="rr", record={"x": 1}, expected_revision=0)
    assert resolver_for(cmd)(state) is None
    st.apply_command(state, cmd)
    assert resolver_for(cmd)(state) is True
    other = st.initial_state()
    assert st.set_operation(other, "rr", {"x": 2}, 0)
    assert resolver_for(cmd)(other) is False, "someone else's record won the revision"
