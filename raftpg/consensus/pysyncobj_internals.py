"""Every pysyncobj internal raftpg relies on, in one place, checked once at start-up.

pysyncobj has no public API for what raftpg needs: holding a replica back from elections, making
its journal durable, reading how much journal is in use, telling the leader state and connected
partners from getStatus() (the leader state cheaply from _isLeader()), destroying a replica whose
port did not bind, and keeping local bookkeeping out of the full dump. Each of these rests on a
private name, a byte offset or a magic value of the release below. check() verifies them all
against the installed pysyncobj and fails loudly, naming both versions, before a replica is built;
tests/unit/test_pysyncobj_internals.py runs it and exercises each one, so an upgrade that breaks
one fails there first.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
from pathlib import Path
from typing import Any

import pysyncobj
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer
from pysyncobj import journal as pysyncobj_journal
from pysyncobj import syncobj as pysyncobj_syncobj
from pysyncobj.monotonic import monotonic
from pysyncobj.pickle import to_bytes
from pysyncobj.version import VERSION

from raftpg.consensus.errors import ConsensusError
from raftpg.consensus.model import RaftStatus

logger = logging.getLogger(__name__)

SUPPORTED_VERSION = "0.3.17"
INSTALLED_VERSION: str = VERSION

# Replica (replica.py): the private method every election deadline comes from, the attribute the
# deadline lives in, and the attribute holding the journal DurableJournal wraps.
ELECTION_TIMEOUT_FACTORY = "_SyncObj__generateRaftTimeout"
ELECTION_DEADLINE = "_SyncObj__raftElectionDeadline"
RAFT_LOG = "_SyncObj__raftLog"
election_clock = monotonic
"""The clock pysyncobj's election deadlines (and heartbeat times) are on."""
# Replica's poller (replica.py): the attribute _onTick polls through, and what tells when the
# next heartbeat is due and whether this replica leads.
POLLER = "_poller"
HEARTBEAT_DUE = "_SyncObj__newAppendEntriesTime"
RAFT_STATE = "_SyncObj__raftState"

# FileJournal: what DurableJournal calls and syncs, and where the term and vote are stored.
JOURNAL_METHODS = (
    "add", "clear", "deleteEntriesFrom", "deleteEntriesTo", "setCurrentTerm", "flush", "onOneSecondTimer",
    "setRaftCommitIndex", "getRaftCommitIndex", "_destroy",
)
_META_SUFFIX = ".meta"
# FileJournal keeps its records in a ResizableFile that it grows by mmap.resize (ftruncate): the
# new tail is a hole, and a store into a hole on a full file system is SIGBUS, not an error.
# reserve_journal_space() does the growth itself, blocks allocated first; these are the names it uses.
_JOURNAL_STORAGE = "_FileJournal__journalFile"
_JOURNAL_END = "_FileJournal__currentOffset"
_STORAGE_MMAP = "_ResizableFile__mm"
_STORAGE_FILE = "_ResizableFile__f"
_STORAGE_GROWTH = "_ResizableFile__resizeFactor"
_RECORD_OVERHEAD = 4 + 16 + 4  # record size before and after the record, index and term
# Header: app name (24 bytes) + app version (8) + format version (4), then the end of the last
# record as a little-endian uint32.
_JOURNAL_END_OFFSET = 36
_JOURNAL_END_FORMAT = "<I"

# getStatus(): the keys read, the leader state and the "connected" value of a partner.
_STATUS_KEYS = ("state", "leader", "raft_term", "commit_idx", "last_applied", "has_quorum", "log_len")
_STATE_LEADER = 2
_PARTNER_PREFIX = "partner_node_status_server_"
_PARTNER_CONNECTED = 2

_FAIL_REASONS = (
    "SUCCESS",
    "QUEUE_FULL",
    "MISSING_LEADER",
    "DISCARDED",
    "NOT_LEADER",
    "LEADER_CHANGED",
    "REQUEST_DENIED",
    "UNKNOWN_OUTCOME",
)
_PUBLIC_METHODS = (
    "waitBinded",
    "addOnTickCallback",
    "forceLogCompaction",
    "tick_thread_alive",
    "destroy",
    "_doDestroy",
    "addNodeToCluster",
    "removeNodeFromCluster",
    "getStatus",
    "transferLeadership",
    "_isLeader",
)


class UnsupportedPysyncobj(ConsensusError):
    """The installed pysyncobj lacks an internal raftpg relies on."""


def meta_file(journal_file: Path) -> Path:
    """Where FileJournal stores the current term and vote."""
    return Path(f"{journal_file}{_META_SUFFIX}")


def journal_bytes(journal_file: Path) -> int:
    """Bytes of journal in use (the mmap'd file is sparse and never shrinks); 0 if unreadable."""
    size = struct.calcsize(_JOURNAL_END_FORMAT)
    try:
        with open(journal_file, "rb") as f:
            header = os.pread(f.fileno(), size, _JOURNAL_END_OFFSET)
    except OSError:
        return 0
    return int(struct.unpack(_JOURNAL_END_FORMAT, header)[0]) if len(header) == size else 0


def allocate_journal_file(journal_file: Path) -> None:
    """Allocate every block of an existing journal file: a journal grown by an older raftpg (or by
    pysyncobj alone) is sparse, and its holes fault like a new tail on a full file system.
    Raises OSError (ENOSPC) if the file system cannot hold it."""
    try:
        fd = os.open(journal_file, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        if size:
            os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


def reserve_journal_space(journal: Any, command: bytes) -> None:
    """Grow a FileJournal's file for one more record the way its ResizableFile would, but with the
    new blocks allocated before they are mapped: a full file system is then an OSError here, before
    anything changed, instead of SIGBUS on the store into the mapping. No-op for other journals."""
    if not isinstance(journal, pysyncobj_journal.FileJournal):
        return
    storage = getattr(journal, _JOURNAL_STORAGE)
    mapping = getattr(storage, _STORAGE_MMAP)
    end = int(getattr(journal, _JOURNAL_END)) + _RECORD_OVERHEAD + len(to_bytes(command))
    size = int(mapping.size())  # the file's size; ResizableFile keeps the mapping as long
    if end <= size:
        return
    new_size = max(int(size * float(getattr(storage, _STORAGE_GROWTH))), end)
    os.posix_fallocate(getattr(storage, _STORAGE_FILE).fileno(), size, new_size - size)
    mapping.resize(new_size)


def timed_work_due(obj: SyncObj) -> float:
    """When (election_clock) Raft next has something to do without any message arriving: the
    leader's next heartbeat, or a follower's or candidate's election deadline. Tick thread only."""
    if getattr(obj, RAFT_STATE) == _STATE_LEADER:
        return float(getattr(obj, HEARTBEAT_DUE))
    return float(getattr(obj, ELECTION_DEADLINE))


def destroy_unstarted(obj: SyncObj) -> None:
    """Release the journal and sockets of a replica whose tick thread never ran (its port did not
    bind): destroy() only asks the tick thread to do it."""
    obj._doDestroy()


def cluster_addrs(obj: SyncObj, self_addr: str) -> set[str]:
    """The Raft addresses of the cluster as this replica knows it, its own included."""
    return {node.address for node in obj.otherNodes} | {self_addr}


def is_leader(obj: SyncObj) -> bool:
    """Cheap enough for every tick, unlike getStatus(); call it on the tick thread."""
    return bool(obj._isLeader())


def read_status(obj: SyncObj, self_addr: str, journal_file: Path) -> RaftStatus:
    """The replica's Raft status from getStatus(), whose keys and values are pysyncobj's own."""
    status: dict[str, Any] = {}
    for _ in range(5):
        try:  # getStatus iterates sets the tick thread may be resizing
            status = obj.getStatus()
            break
        except RuntimeError:
            continue
    leader = status.get("leader")
    return RaftStatus(
        self_addr=self_addr,
        leader=str(leader) if leader is not None else None,
        is_leader=status.get("state") == _STATE_LEADER,
        term=int(status.get("raft_term", 0)),
        commit_index=int(status.get("commit_idx", 0)),
        last_applied=int(status.get("last_applied", 0)),
        has_quorum=bool(status.get("has_quorum", False)),
        partners={
            key[len(_PARTNER_PREFIX) :]: value == _PARTNER_CONNECTED
            for key, value in status.items()
            if key.startswith(_PARTNER_PREFIX)
        },
        tick_thread_alive=obj.tick_thread_alive(),
        journal_bytes=journal_bytes(journal_file),
        log_len=int(status.get("log_len", 0)),
    )


def make_conf(**options: Any) -> SyncObjConf:
    """SyncObjConf ignores option names it does not know: a renamed option would silently keep
    its default. Refuse any that did not arrive."""
    conf = SyncObjConf(**options)
    ignored = sorted(name for name, value in options.items() if getattr(conf, name, object()) != value)
    if ignored:
        raise _unsupported(f"SyncObjConf ignores the options {', '.join(ignored)}")
    return conf


def _unsupported(what: str) -> UnsupportedPysyncobj:
    return UnsupportedPysyncobj(
        f"pysyncobj {INSTALLED_VERSION} is installed, raftpg supports pysyncobj {SUPPORTED_VERSION}: {what}"
    )


class _Probe(SyncObjConsumer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.local = 1
        super().__init__()
        self.replicated = 2


def _problems() -> list[str]:
    """Each internal that is missing or changed, as a sentence."""
    problems: list[str] = []
    if not callable(getattr(SyncObj, ELECTION_TIMEOUT_FACTORY, None)):
        problems.append(f"SyncObj has no {ELECTION_TIMEOUT_FACTORY}()")
    init_names = SyncObj.__init__.__code__.co_names
    problems += [f"SyncObj.__init__ sets no {name}" for name in (ELECTION_DEADLINE, RAFT_LOG, POLLER, HEARTBEAT_DUE,
                                                                   RAFT_STATE) if name not in init_names]
    if POLLER not in SyncObj._onTick.__code__.co_names:
        problems.append("SyncObj._onTick no longer waits in self._poller.poll()")
    problems += [f"SyncObj has no {name}()" for name in _PUBLIC_METHODS if not callable(getattr(SyncObj, name, None))]
    file_journal = pysyncobj_journal.FileJournal
    problems += [
        f"FileJournal has no {name}()" for name in JOURNAL_METHODS if not callable(getattr(file_journal, name, None))
    ]
    if _META_SUFFIX not in file_journal.__init__.__code__.co_consts:
        problems.append(f"FileJournal no longer stores its meta data in <journal>{_META_SUFFIX}")
    problems += _journal_storage_problems()
    if getattr(pysyncobj_journal, "LAST_RECORD_OFFSET_OFFSET", None) != _JOURNAL_END_OFFSET:
        problems.append(f"the journal header no longer keeps its end offset at byte {_JOURNAL_END_OFFSET}")
    status_consts = SyncObj.getStatus.__code__.co_consts
    problems += [f"getStatus() has no {key!r}" for key in (*_STATUS_KEYS, _PARTNER_PREFIX) if key not in status_consts]
    if getattr(getattr(pysyncobj_syncobj, "_RAFT_STATE", None), "LEADER", None) != _STATE_LEADER:
        problems.append(f"the leader state is no longer {_STATE_LEADER}")
    problems += [f"FAIL_REASON has no {name}" for name in _FAIL_REASONS if not hasattr(FAIL_REASON, name)]
    probe = _Probe()
    if probe._serialize() != {"replicated": 2}:
        problems.append("SyncObjConsumer no longer dumps only the attributes created after its __init__")
    if not callable(getattr(SyncObjConsumer, "_deserialize", None)):
        problems.append("SyncObjConsumer has no _deserialize()")
    return problems


def _journal_storage_problems() -> list[str]:
    """What reserve_journal_space() relies on: the private names, and the record layout."""
    init_names = pysyncobj_journal.FileJournal.__init__.__code__.co_names
    problems = [f"FileJournal.__init__ sets no {name}" for name in (_JOURNAL_STORAGE, _JOURNAL_END)
                if name not in init_names]
    storage_names = pysyncobj_journal.ResizableFile.__init__.__code__.co_names
    problems += [f"ResizableFile.__init__ sets no {name}" for name in (_STORAGE_MMAP, _STORAGE_FILE, _STORAGE_GROWTH)
                 if name not in storage_names]
    if pysyncobj_journal.FileJournal.add.__code__.co_consts[1:3] != ("<QQ", "<I"):
        problems.append("FileJournal.add() no longer frames a record as size, index, term, command, size")
    return problems


@functools.cache
def check() -> None:
    """Verify every internal above; raise UnsupportedPysyncobj naming what changed."""
    problems = _problems()
    if problems:
        raise _unsupported("; ".join(problems))
    if INSTALLED_VERSION != SUPPORTED_VERSION:
        logger.warning(
            "pysyncobj %s (%s) is installed, raftpg is tested with %s; every internal it relies on checked out",
            INSTALLED_VERSION,
            pysyncobj.__file__,
            SUPPORTED_VERSION,
        )
