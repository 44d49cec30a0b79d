"""DurableJournal: every change pysyncobj relies on is synced before the call returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raftpg.consensus import durable
from raftpg.consensus.durable import DurableJournal

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
