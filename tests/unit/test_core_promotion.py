"""Stories of the HA core (core.step) from a won race to a promotion: the synchronous members the
winner counted on must stop streaming from the old primary and report before it promotes (rule 5)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from raftpg.ha import actions as A
from raftpg.ha.core import step
from raftpg.ha.memory import Memory
from raftpg.ha.observations import (
    DecisionDue,
    LeaseAcquired,
    Promoted,
    PromotionStarting,
    StopAndReportResult,
    WitnessReport,
)
from raftpg.ha.sync import BLOCKING_NAME
from raftpg.ha.views import PeerPosition, SyncState
from tests.unit.ha_views import NOW, cluster, lease, local, run_story

pytestmark = pytest.mark.unit

SYNC = SyncState("node1", frozenset({"node1", "node2", "node3"}), 2)  # quorum 2 of 3: node2 needs one report
PEERS = [PeerPosition("node1", reachable=False), PeerPosition("node3", reachable=True, lsn=200)]
RACE = cluster(lease(expired=True), peers=PEERS, synchronous_mode="quorum", sync=SYNC)
WON = cluster(lease("node2", "i-node2", version=4), synchronous_mode="quorum", sync=SYNC)
OURS = local(lease_deadline=NOW + 5)


def reports(*answers: WitnessReport, needed: int = 1) -> StopAndReportResult:
    return StopAndReportResult("node2", 200, frozenset({"node1", "node3"}), needed, answers)


def test_race_won_then_witness_reports_then_promotion() -> None:
    memory, last = run_story([
        (DecisionDue(RACE, local()), NOW, [A.AcquireLease]),
        (LeaseAcquired("node2", running_primary=False, sync=SYNC), NOW, []),
        (DecisionDue(WON, OURS), NOW, [A.RenewLease, A.Promote]),
    ])
    promote = last[1]
    assert isinstance(promote, A.Promote)
    assert (promote.witnesses, promote.reports_needed) == (frozenset({"node1", "node3"}), 1)
    memory, _ = run_story([
        (reports(WitnessReport("node3", 200, "node2", "replica")), NOW, []),  # node3 follows us: go on
        (PromotionStarting("quorum"), NOW, []),
        (Promoted(), NOW, []),
    ], memory)
    assert (memory.promotion_witnesses, memory.promotion_reports_needed) == (frozenset(), 0)
    assert memory.sync_names == f'FIRST 1 ("{BLOCKING_NAME}")'  # nothing acknowledged until standbys are in Raft
    assert memory.sync_switch_lsn is None and not memory.rewound and memory.upstream is None


@pytest.mark.parametrize(
    ("result", "released", "why"),
    [
        (reports(WitnessReport("node3", 190, "node1", "replica")), True, "only 0 of the 1"),
        (reports(WitnessReport("node3", 250, "node2", "replica")), True, "node3 is ahead of us (250 > 200)"),
        (reports(), True, "no answer from ['node1', 'node3']"),
        (reports(WitnessReport("node1", None, "node1", "stopped")), False, ""),  # the old primary is down
        (reports(WitnessReport("node9", None, None, "replica")), True, "only 0"),  # not one we counted on
        (reports(needed=0), False, ""),
        (StopAndReportResult("node2", 200, frozenset(), 0, ()), False, ""),
    ],
)
def test_stop_and_report_verdict(result: StopAndReportResult, released: bool, why: str) -> None:
    witnessed = Memory(promotion_witnesses=result.witnesses, promotion_reports_needed=result.needed)
    memory, actions = step(witnessed, result, NOW)
    assert [type(a) for a in actions] == ([A.ReleaseLease] if released else [])
    assert why in (actions[0].reason if actions else "")
    assert (memory.promotion_witnesses, memory.promotion_reports_needed) == (frozenset(), 0)


def test_witnesses_gone_from_the_member_list_are_not_asked() -> None:
    memory = Memory(promotion_witnesses=frozenset({"node3", "node9"}), promotion_reports_needed=1)
    _, actions = step(memory, DecisionDue(WON, OURS), NOW)
    promote = actions[-1]
    assert isinstance(promote, A.Promote) and promote.witnesses == frozenset({"node3"})


@pytest.mark.parametrize(
    ("acquired", "witnesses", "needed"),
    [
        (LeaseAcquired("node2", False, SYNC), {"node1", "node3"}, 1),
        (LeaseAcquired("node2", False, SyncState("node1", frozenset({"node1", "node2"}), 1)), {"node1"}, 1),
        (LeaseAcquired("node2", False, SyncState()), set(), 0),  # asynchronous: nothing to wait for
        (LeaseAcquired("node2", False, SyncState("node1", frozenset({"node2"}), 0)), set(), 0),
        (LeaseAcquired("node2", True, SyncState()), {"old"}, 5),  # reclaimed by a running primary: kept
    ],
)
def test_how_many_sync_members_must_report(acquired: LeaseAcquired, witnesses: set[str], needed: int) -> None:
    before = Memory(promotion_witnesses=frozenset({"old"}), promotion_reports_needed=5)
    memory, actions = step(before, acquired, NOW)
    assert actions == []
    assert (memory.promotion_witnesses, memory.promotion_reports_needed) == (frozenset(witnesses), needed)


def test_promotion_in_asynchronous_mode_unblocks_nothing() -> None:
    memory, _ = step(Memory(sync_names="x", rewind_not_needed_from="node1", rewound=True), PromotionStarting("off"),
                     NOW)
    assert memory == replace(Memory(), sync_names="")
