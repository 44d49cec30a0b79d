"""pysyncobj's SyncObj with three additions: a durable journal (durable.py says why), a replica
that can hold back from Raft elections, and a tick thread that sleeps until Raft has work.

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

pysyncobj's tick thread waits in poll() for at most autoTickPeriod, then runs a full tick whether
or not anything is due: at the 50 ms default that is 20 idle ticks a second on every member, the
larger part of an idle replica's CPU. Messages and proposed commands end the wait at once anyway
(a command writes to a wake-up pipe), so only timed work needs the timeout: the leader's next
heartbeat and a follower's election deadline. DuePoller ends each wait exactly then, so
autoTickPeriod can be long (options.py) without a heartbeat or an election starting late.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj

from raftpg.consensus.durable import DurableJournal, JournalWriteError, describe
from raftpg.consensus.pysyncobj_internals import (
    ELECTION_DEADLINE,
    POLLER,
    RAFT_LOG,
    allocate_journal_file,
    election_clock,
    timed_work_due,
)


class DuePoller:
    """pysyncobj's poller, whose wait also ends when `due()` (on election_clock) comes.

    A due time already past, or farther than the timeout, leaves the timeout as it is: a follower
    past its deadline that reaches nobody cannot campaign, and must not spin."""

    def __init__(self, inner: Any, due: Callable[[], float]) -> None:
        self._inner = inner
        self._due = due

    def subscribe(self, descr: Any, callback: Any, event_mask: int) -> None:
        self._inner.subscribe(descr, callback, event_mask)

    def unsubscribe(self, descr: Any) -> None:
        self._inner.unsubscribe(descr)

    def poll(self, timeout: float) -> None:
        self._inner.poll(wait_for(timeout, self._due() - election_clock()))


DUE_SLACK = 0.001
"""Seconds a poll waits past the due time: pysyncobj acts only once its clock is strictly past it,
and a wake-up a hair early would cost a tick that does nothing and another poll."""


def wait_for(timeout: float, until_due: float) -> float:
    """How long one poll waits: just past the due time if that comes within the timeout, else the
    timeout."""
    return until_due + DUE_SLACK if 0 < until_due < timeout else timeout


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
        # Replaced before the tick thread's first poll; the transport keeps subscribing through it.
        setattr(self, POLLER, DuePoller(getattr(self, POLLER), lambda: timed_work_due(self)))
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
