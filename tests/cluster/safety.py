"""DESIGN.md's safety checker: acknowledged writes, per-node probes, timelines.

A Writer records every acknowledged INSERT through the read-write conninfo. A Prober per node
connects to that node directly and records the [start, end] interval of each acknowledged probe
INSERT. Violations: an acknowledged write missing at the end; acknowledged probes on two different
nodes whose intervals overlap (two writable primaries at once).

A commit whose wait for synchronous replication was cancelled (pg_cancel_backend, a client's cancel
request; not statement_timeout, which PostgreSQL disables before the commit) still reports success,
with only a WARNING: it committed locally but was never acknowledged as replicated. Writer and
Prober watch the notices and count such commits apart ("unreplicated"): they are not acknowledged
writes for the loss rule, nor acknowledged probes for the overlap rule.

The Writer also notes the writes a primary acknowledged while it ran asynchronously
(synchronous_standby_names empty, e.g. a non-strict fallback with no standby left): they are in
`acked`, and their ids in `asynchronous`, so a caller can tell a documented non-strict loss from a
broken guarantee. The setting is read by the INSERT itself; a reload between the statement and its
commit could mislabel one write as synchronous, never the other way round.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import psycopg
from psycopg.errors import Diagnostic

# PostgreSQL's WARNING when a commit stops waiting for its synchronous standbys (SyncRepWaitForLSN).
SYNC_WAIT_CANCELLED = "wait for synchronous replication"


class SyncWaitWatch:
    """Notice handler for one connection: remembers whether the last statement's synchronous wait
    was cancelled (the commit then succeeded locally only)."""

    def __init__(self) -> None:
        self.cancelled = False

    def __call__(self, diag: Diagnostic) -> None:
        if SYNC_WAIT_CANCELLED in (diag.message_primary or ""):
            self.cancelled = True

    def take(self) -> bool:
        """Whether a cancelled wait was seen since the last call."""
        seen, self.cancelled = self.cancelled, False
        return seen


def watched_connect(dsn: str, connect_timeout: int, statement_timeout: str) -> tuple[psycopg.Connection,
                                                                                    SyncWaitWatch]:
    """An autocommit connection with a statement timeout whose cancelled synchronous waits are seen."""
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout)
    watch = SyncWaitWatch()
    conn.add_notice_handler(watch)
    conn.execute(f"SET statement_timeout = '{statement_timeout}'")
    return conn, watch


def setup_tables(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS acked (id bigint PRIMARY KEY, node int)")
        conn.execute("CREATE TABLE IF NOT EXISTS probes (node int, seq bigint, PRIMARY KEY (node, seq))")


@dataclass(eq=False)
class Writer(threading.Thread):
    dsn: str
    rate: float = 100.0
    first_id: int = 1
    acked: list[tuple[int, float, int]] = field(default_factory=list)  # id, ack time, server port
    unreplicated: list[tuple[int, float, int]] = field(default_factory=list)  # success with a cancelled sync wait
    asynchronous: set[int] = field(default_factory=set)  # acked ids written with synchronous_standby_names = ''
    errors: int = 0

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self._halt = threading.Event()

    def run(self) -> None:
        next_id = self.first_id
        conn: psycopg.Connection | None = None
        watch = SyncWaitWatch()
        while not self._halt.is_set():
            try:
                if conn is None:
                    conn, watch = watched_connect(self.dsn, 2, "3s")
                    port = conn.execute("SELECT inet_server_port()").fetchone()[0]  # type: ignore[index]
                row = conn.execute("INSERT INTO acked (id, node) VALUES (%s, %s) "
                                   "RETURNING current_setting('synchronous_standby_names')", (next_id, port)).fetchone()
                if watch.take():
                    self.unreplicated.append((next_id, time.monotonic(), port))
                else:
                    self.acked.append((next_id, time.monotonic(), port))
                    if row is not None and row[0] == "":
                        self.asynchronous.add(next_id)
                next_id += 1
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                next_id += 1  # an unknown outcome: never reuse the id
                time.sleep(0.02)
            time.sleep(1.0 / self.rate)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)

    def max_gap(self, after: float) -> float:
        """Longest time between two acknowledgements after `after` (write-unavailability)."""
        times = [t for _, t, _ in self.acked if t >= after]
        if len(times) < 2:
            return float("inf")
        return max(b - a for a, b in itertools.pairwise(times))


@dataclass(eq=False)
class Prober(threading.Thread):
    """Writes to one node directly; an acknowledged probe means that node was a writable primary."""

    dsn: str
    node_port: int
    intervals: list[tuple[float, float]] = field(default_factory=list)
    unreplicated: int = 0  # probes that succeeded with a cancelled synchronous wait

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self._halt = threading.Event()

    def run(self) -> None:
        seq = time.time_ns() // 1000  # unique across checkers sharing the table
        conn: psycopg.Connection | None = None
        watch = SyncWaitWatch()
        while not self._halt.is_set():
            try:
                if conn is None:
                    conn, watch = watched_connect(self.dsn, 1, "2s")
                seq += 1
                start = time.monotonic()
                conn.execute("INSERT INTO probes (node, seq) VALUES (%s, %s)", (self.node_port, seq))
                if watch.take():
                    self.unreplicated += 1
                else:
                    self.intervals.append((start, time.monotonic()))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(0.02)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)


def overlapping_probes(probers: list[Prober]) -> list[str]:
    problems = []
    for i, a in enumerate(probers):
        for b in probers[i + 1:]:
            for a_start, a_end in a.intervals:
                for b_start, b_end in b.intervals:
                    if a_start < b_end and b_start < a_end:
                        problems.append(f"ports {a.node_port} and {b.node_port} both acknowledged writes "
                                        f"at {max(a_start, b_start):.3f}")
                        break
    return problems


def present_ids(dsn: str) -> set[int]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM acked")}


def missing_writes(dsn: str, writer: Writer) -> list[int]:
    present = present_ids(dsn)
    return [i for i, _, _ in writer.acked if i not in present]


def missing_unreplicated(dsn: str, writer: Writer) -> list[int]:
    """Commits reported with a cancelled synchronous wait that are gone: allowed, but reported."""
    present = present_ids(dsn)
    return [i for i, _, _ in writer.unreplicated if i not in present]


class SafetyChecker:
    """Runs a writer and one prober per node for the duration of a fault."""

    def __init__(self, cluster: object, rate: float = 100.0) -> None:
        from raftpg.devcluster import LocalCluster

        assert isinstance(cluster, LocalCluster)
        self.cluster = cluster
        setup_tables(cluster.dsn_any_primary())
        with psycopg.connect(cluster.dsn_any_primary(), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT coalesce(max(id), 0) FROM acked").fetchone()
        first = int(row[0]) + 1 if row else 1
        self.writer = Writer(cluster.dsn_any_primary(), rate=rate, first_id=first)
        self.probers = [Prober(cluster.dsn(name), node.ports.pg) for name, node in cluster.databases().items()]

    def __enter__(self) -> SafetyChecker:
        self.writer.start()
        for prober in self.probers:
            prober.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.writer.stop()
        for prober in self.probers:
            prober.stop()

    def verify(self) -> None:
        """Assert no acknowledged write is lost and no two nodes acknowledged probes at once."""
        self.stop()
        assert self.writer.acked, "the writer never got an acknowledgement"
        lost = missing_writes(self.cluster.dsn_any_primary(), self.writer)
        assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:20]}"
        overlaps = overlapping_probes(self.probers)
        assert overlaps == [], f"two writable primaries: {overlaps[:5]}"
