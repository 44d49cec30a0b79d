"""The tick thread sleeps until Raft has work (replica.DuePoller), an idle follower no longer
rewrites its meta file every second (DurableJournal.setRaftCommitIndex), a busy one stores its
commit index every COMMIT_INDEX_STORE_EVERY instead of every second, and the idle tick is
derived from the reconnect interval (settings.validate_timings)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import SyncObjConf, SyncObjConsumer
from pysyncobj.journal import FileJournal, MetaStorer

from raftpg.consensus import pysyncobj_internals as internals
from raftpg.consensus.durable import COMMIT_INDEX_STORE_EVERY, DurableJournal
from raftpg.consensus.options import raft_timings
from raftpg.consensus.replica import DUE_SLACK, DuePoller, Replica, wait_for
from raftpg.consensus.settings import IDLE_TICK, IDLE_TICK_MAX, validate_timings
from raftpg.devcluster import free_ports

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("timeout", "until_due", "expected"),
    [
        pytest.param(0.25, 0.04, 0.04 + DUE_SLACK, id="heartbeat-due-before-the-idle-tick"),
        pytest.param(0.25, 0.6, 0.25, id="due-after-the-idle-tick"),
        pytest.param(0.25, 0.0, 0.25, id="due-now-acted-on-this-tick-already"),
        pytest.param(0.25, -3.0, 0.25, id="deadline-past-but-nobody-to-campaign-with-no-spin"),
        pytest.param(0.25, math.inf, 0.25, id="held-back-from-elections"),
    ],
)
def test_one_poll_waits_until_the_due_time_or_the_idle_tick(timeout: float, until_due: float,
                                                              expected: float) -> None:
    assert wait_for(timeout, until_due) == pytest.approx(expected)


class RecordingPoller:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.subscribed: dict[Any, int] = {}

    def subscribe(self, descr: Any, callback: Any, event_mask: int) -> None:
        self.subscribed[descr] = event_mask

    def unsubscribe(self, descr: Any) -> None:
        self.subscribed.pop(descr, None)

    def poll(self, timeout: float) -> None:
        self.waits.append(timeout)


def test_due_poller_shortens_the_wait_and_passes_subscriptions_through() -> None:
    inner = RecordingPoller()
    due = [internals.election_clock() + 0.05]
    poller = DuePoller(inner, lambda: due[0])
    poller.subscribe(7, print, 1)
    poller.poll(0.25)
    due[0] = internals.election_clock() + 10
    poller.poll(0.25)
    poller.unsubscribe(7)
    assert 0 < inner.waits[0] <= 0.05 + DUE_SLACK
    assert inner.waits[1] == 0.25
    assert inner.subscribed == {}


def test_a_replica_polls_through_the_due_poller_until_its_election_deadline(tmp_path: Path) -> None:
    own, partner = (f"127.0.0.1:{port}" for port in free_ports(2))
    conf = SyncObjConf(autoTick=False, journalFile=str(tmp_path / "raft.journal"),
                       fullDumpFile=str(tmp_path / "raft.dump"))
    replica = Replica(own, [partner], conf, consumers=[SyncObjConsumer()], journal_file=tmp_path / "raft.journal",
                      dump_file=tmp_path / "raft.dump", stands_for_election=False)
    try:
        assert isinstance(getattr(replica, internals.POLLER), DuePoller)
        assert internals.timed_work_due(replica) == math.inf  # held back: no election deadline
        replica.stand_for_election()
        deadline = internals.timed_work_due(replica)
        assert deadline == getattr(replica, internals.ELECTION_DEADLINE)
        assert internals.election_clock() < deadline < internals.election_clock() + conf.raftMaxTimeout
    finally:
        internals.destroy_unstarted(replica)


def test_an_unchanged_commit_index_does_not_rewrite_the_meta_file(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    inner = FileJournal(str(path))
    now = [0.0]
    journal = DurableJournal(inner, path, tmp_path / "raft.dump", clock=lambda: now[0])
    meta = internals.meta_file(path)
    try:
        journal.setRaftCommitIndex(5)
        journal.onOneSecondTimer()
        written = meta.stat().st_ino  # the meta file is written aside and renamed: a new inode
        for _ in range(3):  # heartbeats repeating the same commit index, a second apart
            now[0] += COMMIT_INDEX_STORE_EVERY
            journal.setRaftCommitIndex(5)
            journal.onOneSecondTimer()
        assert meta.stat().st_ino == written
        now[0] += COMMIT_INDEX_STORE_EVERY
        journal.setRaftCommitIndex(6)
        journal.onOneSecondTimer()
        assert meta.stat().st_ino != written
        assert inner.getRaftCommitIndex() == 6
    finally:
        inner._destroy()


def stored_index(journal_file: Path) -> Any:
    return MetaStorer(str(internals.meta_file(journal_file))).getMeta().get("raftCommitIndex")


def test_a_moving_commit_index_is_stored_every_few_seconds_a_vote_at_once(tmp_path: Path) -> None:
    """A cluster that commits every second would rewrite the meta file every second."""
    path = tmp_path / "raft.journal"
    inner = FileJournal(str(path))
    now = [100.0]
    journal = DurableJournal(inner, path, tmp_path / "raft.dump", clock=lambda: now[0])
    try:
        journal.setRaftCommitIndex(5)
        journal.onOneSecondTimer()
        stored = [stored_index(path)]
        for index in range(6, 6 + int(COMMIT_INDEX_STORE_EVERY)):
            now[0] += 1.0
            journal.setRaftCommitIndex(index)
            journal.onOneSecondTimer()
            stored.append(stored_index(path))
        assert stored == [5] * int(COMMIT_INDEX_STORE_EVERY) + [5 + int(COMMIT_INDEX_STORE_EVERY)]
        journal.setRaftCommitIndex(99)
        journal.setCurrentTerm(3, "node-b")  # a vote is stored (with the index) before it returns
        assert MetaStorer(str(internals.meta_file(path))).getMeta() == {
            "raftCommitIndex": 99, "currentTerm": 3, "votedForNodeId": "node-b"}
    finally:
        inner._destroy()


def test_a_replica_stopped_on_purpose_stores_its_last_commit_index(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    now = [100.0]
    journal = DurableJournal(FileJournal(str(path)), path, tmp_path / "raft.dump", clock=lambda: now[0])
    journal.setRaftCommitIndex(5)
    journal.onOneSecondTimer()
    now[0] += 1.0
    journal.setRaftCommitIndex(9)
    journal.onOneSecondTimer()
    assert stored_index(path) == 5
    journal._destroy()
    assert stored_index(path) == 9


@pytest.mark.parametrize("ttl", [3, 5, 10, 60])
def test_the_idle_tick_is_half_the_reconnect_interval_at_most_the_cap(ttl: float) -> None:
    timings = validate_timings(raft_timings(ttl))
    assert timings[IDLE_TICK] == pytest.approx(min(IDLE_TICK_MAX, timings["connectionRetryTime"] / 2))
    SyncObjConf(**timings).validate()


def test_an_explicit_idle_tick_is_kept_and_must_be_positive() -> None:
    assert validate_timings({**raft_timings(5), IDLE_TICK: 1.0})[IDLE_TICK] == 1.0
    with pytest.raises(ValueError, match="positive"):
        validate_timings({**raft_timings(5), IDLE_TICK: 0})
