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
still votes and accepts entries. `check_supported()` fails loudly if a pysyncobj release renames it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj
from pysyncobj.monotonic import monotonic  # the clock its deadlines are on

from raftpg.consensus.durable import DurableJournal

_DEADLINE_FACTORY = "_SyncObj__generateRaftTimeout"
_DEADLINE = "_SyncObj__raftElectionDeadline"
_JOURNAL = "_SyncObj__raftLog"


def check_supported() -> None:
    if not callable(getattr(SyncObj, _DEADLINE_FACTORY, None)):
        raise RuntimeError("this pysyncobj release has no election-timeout hook: cannot rejoin safely")


class Replica(SyncObj):  # type: ignore[misc]
    def __init__(self, *args: Any, journal_file: Path, dump_file: Path, stands_for_election: bool = True,
                 **kwargs: Any) -> None:
        # Set before SyncObj.__init__, which draws the first election deadline.
        self.stands_for_election = stands_for_election
        super().__init__(*args, **kwargs)
        # Wrapped before the tick thread's first tick (it sleeps 0.1 s once the transport is ready):
        # every entry from a peer goes through the durable journal.
        journal = getattr(self, _JOURNAL, None)
        if journal is None or not callable(getattr(journal, "flush", None)):
            raise RuntimeError("this pysyncobj release has no journal to make durable")
        setattr(self, _JOURNAL, DurableJournal(journal, journal_file, dump_file))

    def _SyncObj__generateRaftTimeout(self) -> float:
        if not self.stands_for_election:
            return math.inf
        timeout: float = super()._SyncObj__generateRaftTimeout()
        return timeout

    def stand_for_election(self) -> None:
        """From now on, time out and campaign like any follower."""
        self.stands_for_election = True
        setattr(self, _DEADLINE, monotonic() + self._SyncObj__generateRaftTimeout())
