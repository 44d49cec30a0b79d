"""The pysyncobj configuration raftpg runs with, and why each setting is what it is (DESIGN.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from pysyncobj import SyncObjConf

from raftpg.consensus.pysyncobj_internals import make_conf

TIMING_KEYS = (
    "raftMinTimeout",
    "raftMaxTimeout",
    "appendEntriesPeriod",
    "connectionTimeout",
    "connectionRetryTime",
    "leaderFallbackTimeout",
)

IDLE_TICK = "autoTickPeriod"
"""An optional timing: the longest wait of an idle tick thread (replica.py: heartbeats and
elections do not wait for it). It only paces reconnection attempts and leaving a stopped
replica's loop, so by default it is half the reconnect interval, at most IDLE_TICK_MAX."""
IDLE_TICK_MAX = 0.25

JOURNAL_FILE = "raft.journal"
DUMP_FILE = "raft.dump"

# Compaction writes the full dump and truncates the journal, so the journal (which pysyncobj also
# keeps entirely in memory) stays bounded: a few renewals and member heartbeats per second.
LOG_COMPACTION_MIN_ENTRIES = 2000
LOG_COMPACTION_MIN_TIME = 60.0


def derive_key(scope: str, password: str) -> str:
    """What pysyncobj gets as its password.

    pysyncobj's PBKDF2 salt is a constant shared by every deployment; mixing the scope in means
    two clusters with the same password still cannot cross-join or replay each other's traffic.
    """
    if not password:
        raise ValueError("a Raft password is mandatory: the Raft port carries pickles")
    if not scope or "\0" in scope:
        raise ValueError("scope must be a non-empty string without NUL characters")
    material = b"raftpg/v1\0" + scope.encode() + b"\0" + password.encode()
    return hashlib.sha256(material).hexdigest()


def validate_timings(timings: Mapping[str, float]) -> dict[str, float]:
    """Check the relations pysyncobj asserts, with messages a user can act on; add the idle tick."""
    missing = [key for key in TIMING_KEYS if key not in timings]
    if missing:
        raise ValueError(f"Raft timings missing: {', '.join(missing)}")
    t = {key: float(timings[key]) for key in TIMING_KEYS}
    t[IDLE_TICK] = float(timings.get(IDLE_TICK, min(IDLE_TICK_MAX, t["connectionRetryTime"] / 2)))
    if any(value <= 0 for value in t.values()):
        raise ValueError(f"Raft timings must be positive: {t}")
    if t["raftMinTimeout"] <= 3 * t["appendEntriesPeriod"]:
        raise ValueError("raftMinTimeout must exceed 3 x appendEntriesPeriod")
    if t["raftMaxTimeout"] <= t["raftMinTimeout"]:
        raise ValueError("raftMaxTimeout must exceed raftMinTimeout")
    if t["connectionTimeout"] < t["raftMaxTimeout"]:
        raise ValueError("connectionTimeout must be at least raftMaxTimeout")
    if t["leaderFallbackTimeout"] <= t["appendEntriesPeriod"]:
        raise ValueError("leaderFallbackTimeout must exceed appendEntriesPeriod")
    return t


def build_conf(
    *, scope: str, password: str, self_addr: str, data_dir: Path, timings: Mapping[str, float]
) -> SyncObjConf:
    return make_conf(
        password=derive_key(scope, password),
        # Bind exactly the configured address; pysyncobj would otherwise listen on 0.0.0.0.
        bindAddress=self_addr,
        maxBindRetries=1,
        # A journal alone lost all state after repeated kills; always pair it with a dump.
        journalFile=str(data_dir / JOURNAL_FILE),
        fullDumpFile=str(data_dir / DUMP_FILE),
        # Forking a threaded process can deadlock.
        useFork=False,
        # Batching makes every commit wait ~100 ms; without it a commit takes ~1 ms.
        appendEntriesUseBatch=False,
        # A command queued while there is no leader could commit long after its caller gave up.
        commandsWaitLeader=False,
        dynamicMembershipChange=True,
        logCompactionMinEntries=LOG_COMPACTION_MIN_ENTRIES,
        logCompactionMinTime=LOG_COMPACTION_MIN_TIME,
        autoTick=True,
        **validate_timings(timings),
    )
