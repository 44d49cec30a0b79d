"""Every pysyncobj internal raftpg relies on, against the installed pysyncobj: an upgrade that
renames, moves or changes one fails here (and in check() at start-up), not in production."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer
from pysyncobj.journal import FileJournal

from raftpg.consensus import pysyncobj_internals as internals
from raftpg.consensus.machine import StateMachine
from raftpg.consensus.replica import Replica
from raftpg.devcluster import free_ports

pytestmark = pytest.mark.unit


def test_every_internal_checks_out_on_the_installed_pysyncobj() -> None:
    internals.check.cache_clear()
    internals.check()


def test_the_installed_pysyncobj_is_the_pinned_one() -> None:
    """pyproject.toml pins pysyncobj==SUPPORTED_VERSION; a new release is re-read before the pin moves."""
    assert internals.INSTALLED_VERSION == internals.SUPPORTED_VERSION


def test_check_names_what_is_missing_and_both_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(SyncObj, internals.ELECTION_TIMEOUT_FACTORY)
    internals.check.cache_clear()
    with pytest.raises(internals.UnsupportedPysyncobj) as raised:
        internals.check()
    internals.check.cache_clear()
    message = str(raised.value)
    assert f"pysyncobj {internals.INSTALLED_VERSION} is installed" in message
    assert f"raftpg supports pysyncobj {internals.SUPPORTED_VERSION}" in message
    assert internals.ELECTION_TIMEOUT_FACTORY in message


def test_replica_overrides_the_election_timeout_factory_by_its_mangled_name() -> None:
    assert internals.ELECTION_TIMEOUT_FACTORY in vars(Replica)


def test_the_state_machine_hooks_the_dump_loader() -> None:
    assert "_deserialize" in vars(StateMachine)
    assert callable(vars(SyncObjConsumer)["_deserialize"])


def test_journal_end_offset_and_meta_file(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = FileJournal(str(path))
    try:
        empty = internals.journal_bytes(path)
        command = b"x" * 10
        journal.add(command, 1, 1)
        journal.flush()
        record = 4 + struct.calcsize("<QQ") + len(command) + 4  # length, idx + term, command, length
        assert internals.journal_bytes(path) == empty + record
        journal.setCurrentTerm(3, None)
        assert internals.meta_file(path).is_file()
    finally:
        journal._destroy()
    assert internals.journal_bytes(tmp_path / "missing") == 0


def test_election_hold_back_status_and_destroy_on_an_unticked_replica(tmp_path: Path) -> None:
    own, partner = (f"127.0.0.1:{port}" for port in free_ports(2))
    conf = SyncObjConf(
        autoTick=False, journalFile=str(tmp_path / "raft.journal"), fullDumpFile=str(tmp_path / "raft.dump")
    )
    replica = Replica(
        own,
        [partner],
        conf,
        consumers=[SyncObjConsumer()],
        journal_file=tmp_path / "raft.journal",
        dump_file=tmp_path / "raft.dump",
        stands_for_election=False,
    )
    try:
        assert getattr(replica, internals.ELECTION_DEADLINE) == math.inf
        replica.stand_for_election()
        assert math.isfinite(getattr(replica, internals.ELECTION_DEADLINE))
        assert type(getattr(replica, internals.RAFT_LOG)).__name__ == "DurableJournal"
        status = internals.read_status(replica, own, tmp_path / "raft.journal")
        assert (status.is_leader, status.leader, status.term, status.has_quorum) == (False, None, 0, False)
        assert status.partners == {partner: False}
        assert status.self_addr == own and not status.tick_thread_alive and status.journal_bytes > 0
    finally:
        internals.destroy_unstarted(replica)


def test_an_option_pysyncobj_does_not_know_is_refused() -> None:
    assert internals.make_conf(raftMinTimeout=0.3).raftMinTimeout == 0.3
    with pytest.raises(internals.UnsupportedPysyncobj, match="raftMinTimout"):
        internals.make_conf(raftMinTimout=0.3)
