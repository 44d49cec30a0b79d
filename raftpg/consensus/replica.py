"""pysyncobj's SyncObj with two additions: a durable journal (durable.py says why), and a replica
that can hold back from Raft elections.

A member whose Raft log was wiped (it returns after the cluster was recovered from one survivor)
must not stand for election before it has the survivor's log: two wiped members are a majority of
three, would elect one of themselves with an empty log, and Raft would then overwrite the
survivor's recovered state with nothing. Holding back is safe for liveness as long as the
survivor (or any member with the log) stands: it wins with a wiped member's vote, since an empty
log is never more up to date than its own.

pysyncobj has no switch for this. Every election deadline it sets comes from its private
`__generateRaftTimeout`; overriding that one method (name-mangled `_SyncObj__generateRaftTimeout`)
to return infinity while holding back keeps the follower from ever becoming a candidate, while it
still votes and accepts entries. pysyncobj_internals.check() fails loudly if a release renames it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj

from raftpg.consensus.durable import DurableJournal, JournalWriteError, describe
from raftpg.consensus.pysyncobj_internals import ELECTION_DEADLINE, RAFT_LOG, allocate_journal_file, election_clock


class Replica(SyncObj):  # type: ignore[misc]
    def __init__(self, *args: Any, journal_file: Path, dump_file: Path, stands_for_election: bool = True,
                 **kwargs: Any) -> None:
        # Set before SyncObj.__init__, which draws the first election deadline.
        self.stands_for_election = stands_for_election
        # Before pysyncobj maps the journal: a sparse one from an older run would fault on a full disk.
        try:
            allocate_journal_file(journal_file)
        except OSError as exc:
            raise JournalWriteError(describe(journal_file.parent, exc)) from exc
        super().__init__(*args, **kwargs)
        # Wrapped before the tick thread's first tick (it sleeps 0.1 s once the transport is ready):
        # every entry from a peer goes through the durable journal.
        setattr(self, RAFT_LOG, DurableJournal(getattr(self, RAFT_LOG), journal_file, dump_file))

    def _SyncObj__generateRaftTimeout(self) -> float:  # pysyncobj_internals.ELECTION_TIMEOUT_FACTORY
        if not self.stands_for_election:
            return math.inf
        timeout: float = super()._SyncObj__generateRaftTimeout()
        return timeout

    def stand_for_election(self) -> None:
        """From now on, time out and campaign like any follower."""
        self.stands_for_election = True
        setattr(self, ELECTION_DEADLINE, election_clock() + self._SyncObj__generateRaftTimeout())
