"""Make pysyncobj's journal durable: Raft's safety assumes that what a replica appended, truncated
or voted survives a crash of the whole machine, not only of the process.

pysyncobj's FileJournal writes entries into an mmap and never syncs it, stores the term and vote by
rename without fsync, and replaces the full dump by rename before it truncates the journal. After
a power loss Linux may have dropped up to its dirty-page expiry (30 s by default) of all of that:
a committed lease hand-over could vanish from every replica at once, and the old holder would
reclaim a lease it lost. DurableJournal wraps the journal and makes each change durable before
pysyncobj goes on to acknowledge it: an entry before the append is answered, a vote before it is
sent, the dump before the entries it replaces are dropped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raftpg.consensus.pysyncobj_internals import meta_file


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path; a missing one has nothing to sync."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableJournal:
    """Delegates to pysyncobj's journal; syncs after every change pysyncobj relies on."""

    def __init__(self, inner: Any, journal_file: Path, dump_file: Path) -> None:
        self._inner = inner
        self._meta_file = meta_file(journal_file)
        self._dump_file = dump_file
        self._dir = journal_file.parent

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._inner.add(command, idx, term)
        self._inner.flush()

    def clear(self) -> None:
        self._inner.clear()
        self._inner.flush()

    def deleteEntriesFrom(self, entry_from: int) -> None:
        # A follower calls this before every append, mostly with nothing after entry_from: the
        # journal is then unchanged and a sync (an msync per append on every follower) buys nothing.
        if entry_from >= len(self._inner):
            return
        self._inner.deleteEntriesFrom(entry_from)
        self._inner.flush()

    def deleteEntriesTo(self, entry_to: int) -> None:
        # Log compaction: the dump that replaces these entries was renamed into place; make it and
        # the rename durable before the entries go.
        fsync_path(self._dump_file)
        fsync_path(self._dir)
        self._inner.deleteEntriesTo(entry_to)
        self._inner.flush()

    def setCurrentTerm(self, term: int, voted_for: Any) -> None:
        self._inner.setCurrentTerm(term, voted_for)
        fsync_path(self._meta_file)
        fsync_path(self._dir)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: Any) -> Any:
        return self._inner[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._inner)
