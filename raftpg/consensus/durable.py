"""Make pysyncobj's journal durable: Raft's safety assumes that what a replica appended, truncated
or voted survives a crash of the whole machine, not only of the process.

pysyncobj's FileJournal writes entries into an mmap and never syncs it, stores the term and vote by
rename without fsync, and replaces the full dump by rename before it truncates the journal. After
a power loss Linux may have dropped up to its dirty-page expiry (30 s by default) of all of that:
a committed lease hand-over could vanish from every replica at once, and the old holder would
reclaim a lease it lost. DurableJournal wraps the journal and makes each change durable before
pysyncobj goes on to acknowledge it: an entry before the append is answered, a vote before it is
sent, the dump before the entries it replaces are dropped.

It also makes a full file system an error rather than a crash: pysyncobj grows the journal by
extending a memory mapping, and a store into an unallocated page of a full file system is SIGBUS,
which kills raftpg without a word. Each append first allocates the blocks it may need
(reserve_journal_space), so ENOSPC arrives as OSError before anything changed. Any failed write
of the journal or the term and vote is then fatal: the change was not made durable, so it must not
be acknowledged, and pysyncobj (which logs a failed tick and retries it) cannot be trusted to go on
from a half-done tick. on_failure (stop_process in the daemon) logs why and exits with
EXIT_JOURNAL_FAILED; the supervisor restarts raftpg, and with space back it replays its intact
journal. Meanwhile the fence stops PostgreSQL at the lease deadline, as for any dead raftpg.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from raftpg.consensus.errors import ConsensusError
from raftpg.consensus.pysyncobj_internals import meta_file, reserve_journal_space

logger = logging.getLogger(__name__)

EXIT_JOURNAL_FAILED = 75
"""raftpg's exit status when its Raft journal cannot be written (EX_TEMPFAIL: restart it later)."""

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

COMMIT_INDEX_STORE_EVERY = 10.0
"""Seconds between two stores of a moved commit index alone. pysyncobj rewrites its meta file
(written aside, renamed) each second the commit index moved, which on a cluster committing
anything (an idle one renews its lease every loop_wait) is every second on every replica. That
index only says how far a restarted replica may apply its journal before it hears from a leader;
Raft keeps it in volatile state, a stale one is safe (it applies the rest once a leader tells it),
it was never synced, and raftpg acts only after its start-up barrier anyway. Term and vote are
still stored, and synced, before setCurrentTerm returns."""


class JournalWriteError(ConsensusError):
    """A change to the Raft journal, or to the term and vote, could not be made durable."""


def free_bytes(directory: Path) -> int | None:
    """Bytes an unprivileged writer may still use on directory's file system; None if unknown."""
    try:
        stat = os.statvfs(directory)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def describe(directory: Path, exc: OSError) -> str:
    """The one line an operator reads in the log."""
    if exc.errno in _NO_SPACE:
        free = free_bytes(directory)
        reason = f"no space left on device in {directory} ({'?' if free is None else free} bytes free)"
    else:
        reason = f"cannot write in {directory}: {exc}"
    return f"Raft journal: {reason}: stopping; the fence stops PostgreSQL at the lease deadline"


def stop_process(error: JournalWriteError) -> NoReturn:
    """Log why and exit at once, from whichever thread found it (pysyncobj's tick thread)."""
    logger.critical("%s", error)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(EXIT_JOURNAL_FAILED)


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

    def __init__(self, inner: Any, journal_file: Path, dump_file: Path,
                 on_failure: Callable[[JournalWriteError], None] = stop_process,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._inner = inner
        self._meta_file = meta_file(journal_file)
        self._dump_file = dump_file
        self._dir = journal_file.parent
        self._on_failure = on_failure
        self._clock = clock
        self._commit_index_stored_at = -math.inf

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed write into on_failure, then JournalWriteError (if on_failure returned):
        the caller must not take the change as made."""
        try:
            yield
        except OSError as exc:
            error = JournalWriteError(describe(self._dir, exc))
            self._on_failure(error)
            raise error from exc

    def add(self, command: bytes, idx: int, term: int) -> None:
        with self._writing():
            reserve_journal_space(self._inner, command)
            self._inner.add(command, idx, term)
            self._inner.flush()

    def clear(self) -> None:
        with self._writing():
            self._inner.clear()
            self._inner.flush()

    def deleteEntriesFrom(self, entry_from: int) -> None:
        # A follower calls this before every append, mostly with nothing after entry_from: the
        # journal is then unchanged and a sync (an msync per append on every follower) buys nothing.
        if entry_from >= len(self._inner):
            return
        with self._writing():
            self._inner.deleteEntriesFrom(entry_from)
            self._inner.flush()

    def deleteEntriesTo(self, entry_to: int) -> None:
        # Log compaction: the dump that replaces these entries was renamed into place; make it and
        # the rename durable before the entries go.
        with self._writing():
            fsync_path(self._dump_file)
            fsync_path(self._dir)
            self._inner.deleteEntriesTo(entry_to)
            self._inner.flush()

    def setCurrentTerm(self, term: int, voted_for: Any) -> None:
        # A failed meta write leaves the old file (it is written aside and renamed), but pysyncobj
        # already holds the new term and vote in memory: going on could send a vote not on disk.
        with self._writing():
            self._inner.setCurrentTerm(term, voted_for)
            fsync_path(self._meta_file)
            fsync_path(self._dir)

    def setRaftCommitIndex(self, index: int) -> None:
        # A follower reports the commit index with every append entries, heartbeats included, and
        # FileJournal then rewrites its meta file at the next one-second timer even when the index
        # is the same: an idle follower wrote and renamed a file every second for nothing.
        if index != self._inner.getRaftCommitIndex():
            self._inner.setRaftCommitIndex(index)

    def onOneSecondTimer(self) -> None:
        # Stores the commit index when it changed, at most every COMMIT_INDEX_STORE_EVERY; failing
        # there is the same full disk as anywhere else.
        now = self._clock()
        if now - self._commit_index_stored_at < COMMIT_INDEX_STORE_EVERY:
            return
        self._commit_index_stored_at = now
        with self._writing():
            self._inner.onOneSecondTimer()

    def _destroy(self) -> None:
        # A replica stopped on purpose stores its last commit index first: restarted, it applies its
        # whole journal at once instead of waiting for a leader to say how far.
        try:
            self._inner.onOneSecondTimer()
        except OSError as exc:
            logger.warning("%s", describe(self._dir, exc))
        self._inner._destroy()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: Any) -> Any:
        return self._inner[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._inner)
