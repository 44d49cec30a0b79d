"""Stories of the HA core's synchronous-replication memory (rule 5): the wait for a synchronous
standby before falling back, and what it keeps of PostgreSQL's synchronous_standby_names."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from raftpg.ha import actions as A
from raftpg.ha.memory import Memory
from raftpg.ha.observations import DecisionDue, Gathered, SyncApplied, SyncRequested
from raftpg.ha.sync import BLOCKING_NAME
from raftpg.ha.views import LocalView, PgRole
from tests.unit.ha_views import NOW, cluster, holder, run_story

pytestmark = pytest.mark.unit

ON = cluster(synchronous_mode="on")  # ttl 10: the fallback waits 10 s


def primary(at: float, **kw: Any) -> LocalView:
    return holder(postgres_sync=None, now=at, lease_deadline=at + 5, **kw)


def test_fallback_only_after_the_timeout_and_the_wait_restarts_after_a_standby() -> None:
    with_standby = dict(standbys=MappingProxyType({"node2": 300}))
    memory, actions = run_story([
        (DecisionDue(ON, primary(NOW)), NOW, [A.RenewLease, A.Idle, A.EnsureSlots]),  # blocked, waiting
        (DecisionDue(ON, primary(NOW + 9.9)), NOW + 9.9, [A.RenewLease, A.Idle, A.EnsureSlots]),
        (DecisionDue(ON, primary(NOW + 10)), NOW + 10, [A.RenewLease, A.SetPostgresSync, A.Idle, A.EnsureSlots]),
    ])
    assert memory.sync_waiting_since == NOW and "running asynchronously" in actions[2].reason
    memory, _ = run_story([
        (DecisionDue(ON, primary(NOW + 11, **with_standby)), NOW + 11, [A.RenewLease, A.SetRaftSync, A.EnsureSlots]),
        (DecisionDue(ON, primary(NOW + 12)), NOW + 12, [A.RenewLease, A.Idle, A.EnsureSlots]),  # it dropped
    ], memory)
    assert memory.sync_waiting_since == NOW + 12  # a new wait of a full timeout


def test_no_wait_is_counted_while_not_the_holding_primary() -> None:
    memory, _ = run_story([(DecisionDue(ON, holder(role=PgRole.REPLICA, lease_deadline=None)), NOW, [A.RenewLease])],
                          Memory(sync_waiting_since=NOW - 100))
    assert memory.sync_waiting_since is None


@pytest.mark.parametrize(
    ("mode", "members", "quorum", "names"),
    [
        ("on", frozenset({"node2"}), 1, 'FIRST 1 ("node2")'),
        ("quorum", frozenset({"node2", "node3"}), 1, 'ANY 1 ("node2", "node3")'),
        ("on", None, 0, f'FIRST 1 ("{BLOCKING_NAME}")'),
        ("on", frozenset(), 0, ""),
    ],
)
def test_synchronous_standby_names_are_chosen_by_the_core(mode: str, members: frozenset[str] | None, quorum: int,
                                                          names: str) -> None:
    memory, _ = run_story([(SyncRequested(mode, members, quorum), NOW, []), (SyncApplied(4242), NOW, [])])
    assert (memory.sync_names, memory.sync_switch_lsn) == (names, 4242)


def test_a_primary_we_did_not_start_keeps_its_setting() -> None:
    memory, _ = run_story([(Gathered(ON, holder()), NOW, [])])
    assert memory.sync_names == ""
    adopted, _ = run_story([(Gathered(ON, holder(), standby_names='ANY 1 ("node3")'), NOW, [])])
    assert adopted.sync_names == 'ANY 1 ("node3")'
    kept, _ = run_story([(Gathered(ON, holder(), standby_names='ANY 1 ("node3")'), NOW, [])], Memory(sync_names="x"))
    assert kept.sync_names == "x"
