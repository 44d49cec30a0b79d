"""DurableJournal: every change pysyncobj relies on is synced before the call returns, and a full
file system fails the change (not SIGBUS) and leaves every acknowledged one intact."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.journal import FileJournal

from raftpg.consensus import durable
from raftpg.consensus.durable import DurableJournal, JournalWriteError
from raftpg.consensus.pysyncobj_internals import allocate_journal_file
from tests.tmpfs import fill, free, small_tmpfs

pytestmark = pytest.mark.unit


class RecordingJournal:
    """Stands in for pysyncobj's FileJournal; records the order of changes and syncs."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.entries: list[tuple[bytes, int, int]] = []

    def add(self, command: bytes, idx: int, term: int) -> None:
        self.entries.append((command, idx, term))
        self.events.append("add")

    def clear(self) -> None:
        self.entries.clear()
        self.events.append("clear")

    def deleteEntriesFrom(self, entry_from: int) -> None:
        del self.entries[entry_from:]
        self.events.append("deleteEntriesFrom")

    def deleteEntriesTo(self, entry_to: int) -> None:
        del self.entries[:entry_to]
        self.events.append("deleteEntriesTo")

    def setCurrentTerm(self, term: int, voted_for: Any) -> None:
        self.events.append("setCurrentTerm")

    def getCurrentTerm(self) -> int:
        return 7

    def flush(self) -> None:
        self.events.append("flush")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: Any) -> Any:
        return self.entries[index]


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[DurableJournal, list[str]]:
    events: list[str] = []
    monkeypatch.setattr(durable, "fsync_path", lambda path: events.append(f"fsync {path.name}"))
    inner = RecordingJournal(events)
    return DurableJournal(inner, tmp_path / "raft.journal", tmp_path / "raft.dump"), events


def test_each_change_is_flushed_before_it_returns(journal: tuple[DurableJournal, list[str]]) -> None:
    wrapped, events = journal
    wrapped.add(b"a", 1, 1)
    wrapped.add(b"b", 2, 1)
    wrapped.deleteEntriesFrom(1)
    wrapped.clear()
    assert events == ["add", "flush", "add", "flush", "deleteEntriesFrom", "flush", "clear", "flush"]


def test_deleting_past_the_end_changes_nothing_and_syncs_nothing(journal: tuple[DurableJournal, list[str]]) -> None:
    """pysyncobj's followers delete from the next index before every append: no sync for that."""
    wrapped, events = journal
    wrapped.add(b"a", 1, 1)
    wrapped.deleteEntriesFrom(1)
    wrapped.deleteEntriesFrom(5)
    assert events == ["add", "flush"]
    assert len(wrapped) == 1


def test_compaction_syncs_the_dump_and_its_rename_before_dropping_entries(
        journal: tuple[DurableJournal, list[str]], tmp_path: Path) -> None:
    wrapped, events = journal
    wrapped.deleteEntriesTo(3)
    assert events == ["fsync raft.dump", f"fsync {tmp_path.name}", "deleteEntriesTo", "flush"]


def test_a_vote_is_synced_before_it_returns(journal: tuple[DurableJournal, list[str]], tmp_path: Path) -> None:
    wrapped, events = journal
    wrapped.setCurrentTerm(8, 2)
    assert events == ["setCurrentTerm", "fsync raft.journal.meta", f"fsync {tmp_path.name}"]


def test_everything_else_is_the_journal_itself(journal: tuple[DurableJournal, list[str]]) -> None:
    wrapped, _ = journal
    wrapped.add(b"a", 1, 1)
    assert (len(wrapped), wrapped[0], list(wrapped), wrapped.getCurrentTerm()) == (1, (b"a", 1, 1), [(b"a", 1, 1)], 7)


ENTRY = b"x" * 1000
Entry = tuple[bytes, int, int]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "fs") as path:
        yield path


def on_disk(directory: Path, failures: list[JournalWriteError]) -> DurableJournal:
    journal_file = directory / "raft.journal"
    return DurableJournal(FileJournal(str(journal_file)), journal_file, directory / "raft.dump",
                          on_failure=failures.append)


def reopened(directory: Path) -> list[Entry]:
    journal = FileJournal(str(directory / "raft.journal"))
    try:
        return list(journal)
    finally:
        journal._destroy()


def append(journal: DurableJournal, acknowledged: list[Entry], count: int) -> None:
    for _ in range(count):
        entry = (ENTRY + str(len(acknowledged)).encode(), len(acknowledged) + 1, 1)
        journal.add(*entry)
        acknowledged.append(entry)


def test_without_the_reservation_pysyncobj_dies_of_sigbus_on_a_full_file_system(small_fs: Path) -> None:
    """The failure this module guards against, reproduced: pysyncobj's journal alone, in a child."""
    bare = small_fs / "raft.journal"
    FileJournal(str(bare))._destroy()
    fill(small_fs)
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from pysyncobj.journal import FileJournal; j = FileJournal(sys.argv[1]);"
         " [j.add(b'x' * 1000, i, 1) for i in range(1, 100)]", str(bare)],
        capture_output=True, timeout=60, check=False)
    assert child.returncode == -signal.SIGBUS, child


def test_appending_past_the_space_fails_and_keeps_every_acknowledged_entry(small_fs: Path) -> None:
    failures: list[JournalWriteError] = []
    journal = on_disk(small_fs, failures)
    acknowledged: list[Entry] = []
    append(journal, acknowledged, 5)
    fill(small_fs)
    with pytest.raises(JournalWriteError, match=r"no space left on device in .*fs \(\d+ bytes free\): stopping"):
        append(journal, acknowledged, 100)
    assert len(failures) == 1
    assert len(journal) == len(acknowledged) >= 5  # the failed entry is not in the journal either
    journal._destroy()
    assert reopened(small_fs) == acknowledged

    free(small_fs)
    journal = on_disk(small_fs, failures)
    append(journal, acknowledged, 20)
    journal._destroy()
    assert reopened(small_fs) == acknowledged
    assert len(failures) == 1


def test_a_vote_that_cannot_be_stored_fails_and_the_previous_one_stays(small_fs: Path) -> None:
    failures: list[JournalWriteError] = []
    journal = on_disk(small_fs, failures)
    journal.setCurrentTerm(3, "node-a")
    fill(small_fs)
    with pytest.raises(JournalWriteError, match="no space left on device"):
        journal.setCurrentTerm(4, "node-b")
    journal._destroy()
    meta = FileJournal(str(small_fs / "raft.journal"))
    assert (meta.getCurrentTerm(), meta.getVotedForNodeId(), len(failures)) == (3, "node-a", 1)
    meta._destroy()


def test_a_sparse_journal_is_allocated_before_it_is_mapped(small_fs: Path) -> None:
    """A journal pysyncobj grew alone has holes; filling them at start-up fails cleanly when full."""
    journal_file = small_fs / "raft.journal"
    bare = FileJournal(str(journal_file))
    for idx in range(1, 10):
        bare.add(ENTRY, idx, 1)
    bare._destroy()
    assert journal_file.stat().st_blocks * 512 < journal_file.stat().st_size
    fill(small_fs)
    with pytest.raises(OSError) as raised:
        allocate_journal_file(journal_file)
    assert raised.value.errno == errno.ENOSPC
    free(small_fs)
    allocate_journal_file(journal_file)
    assert journal_file.stat().st_blocks * 512 >= journal_file.stat().st_size
    assert len(reopened(small_fs)) == 9
