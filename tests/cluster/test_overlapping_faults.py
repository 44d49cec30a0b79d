"""Faults that overlap recovery, in quorum mode: a postmaster crash followed by a kill -9 of the same
node right after writes are acknowledged again, repeated; power loss of all three nodes at once.
And the honest-client rule: a commit whose synchronous wait was cancelled is seen as such.
The rule is absolute: no acknowledged
write lost, never two writable primaries, every member streaming again without an operator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from raftpg.poll import wait_for
from tests.cluster import faults
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster
from tests.cluster.faults import FaultCluster
from tests.cluster.safety import SafetyChecker, watched_connect

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

# Delays between "writes acknowledged again" and the kill -9 of each round: at once, while the
# standbys are still reconnecting, and after they likely have.
SECOND_FAULT_DELAYS = (0.0, 0.3, 1.0)
WRITABLE_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[FaultCluster]:
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2, synchronous_mode="quorum")


def acknowledged_after(checker: SafetyChecker, since: float) -> tuple[int, float, int]:
    def probe() -> tuple[int, float, int] | None:
        acked = checker.writer.acked
        return acked[-1] if acked and acked[-1][1] > since else None

    return wait_for(probe, WRITABLE_TIMEOUT, "a write acknowledged after the fault", interval=0.01)


def test_postmaster_crash_then_kill_of_the_same_node(healthy: FaultCluster) -> None:
    with SafetyChecker(healthy) as checker:
        acknowledged_after(checker, time.monotonic())
        for delay in SECOND_FAULT_DELAYS:
            victim = healthy.wait_primary(WRITABLE_TIMEOUT)
            old = healthy.nodes[victim].postmaster_pid()
            healthy.kill_postmaster(victim)
            wait_for(lambda v=victim, o=old: faults.postmaster_replaced(healthy, v, o), WRITABLE_TIMEOUT,  # type: ignore[misc]
                     f"a new postmaster on {victim} or another primary", interval=0.02)
            acknowledged_after(checker, time.monotonic())
            time.sleep(delay)
            healthy.kill_node(victim)
            healthy.start_node(victim)  # back at once: the next round overlaps its recovery
            acknowledged_after(checker, time.monotonic())
        primary = healthy.wait_healthy(HEALTHY_TIMEOUT)
        acknowledged_after(checker, time.monotonic())
        checker.verify()
    assert healthy.streaming_replicas(primary) == set(healthy.nodes) - {primary}


def test_power_loss_of_every_node(healthy: FaultCluster) -> None:
    primary = healthy.wait_healthy(HEALTHY_TIMEOUT)
    identifier = faults.system_identifier(healthy.dsn(primary))
    with SafetyChecker(healthy) as checker:
        acknowledged_after(checker, time.monotonic())
        faults.power_loss(healthy)
        assert all(node.raftpg_pid() is None and node.postmaster_pid() is None for node in healthy.nodes.values())
        for name in healthy.nodes:
            healthy.start_node(name)
        acknowledged_after(checker, time.monotonic())
        healthy.wait_healthy(HEALTHY_TIMEOUT)
        checker.verify()
    assert faults.system_identifier(healthy.dsn_any_primary()) == identifier


def test_cancelled_synchronous_wait_is_not_an_acknowledgement(healthy: FaultCluster) -> None:
    """With every standby's PostgreSQL frozen, a commit on the primary waits for its quorum; cancelling
    that wait (pg_cancel_backend, as a driver's query timeout does) makes PostgreSQL report success with
    a WARNING only. The checker's notice watch must flag it: committed locally, never replicated.
    (statement_timeout does not do this: PostgreSQL disables it before the commit's wait.)"""
    primary = healthy.wait_healthy(HEALTHY_TIMEOUT)
    admin = psycopg.connect(healthy.dsn(primary), autocommit=True)
    conn, watch = watched_connect(healthy.dsn(primary), 5, "0")
    with admin, conn:
        admin.execute("CREATE TABLE IF NOT EXISTS cancelled_wait (v int)")

        def synchronous() -> bool:
            row = admin.execute("SHOW synchronous_standby_names").fetchone()
            return row is not None and row[0] != ""

        def waiting() -> bool:
            row = admin.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                (conn.info.backend_pid,)).fetchone()
            return row == ("SyncRep",)

        wait_for(synchronous, HEALTHY_TIMEOUT, f"synchronous standbys on {primary}")
        commit = threading.Thread(target=conn.execute, args=("INSERT INTO cancelled_wait VALUES (1)",), daemon=True)
        frozen = [pid for name in healthy.nodes if name != primary for pid in faults.freeze_postgres(healthy, name)]
        try:
            commit.start()
            wait_for(waiting, 5, "the commit waiting for synchronous replication", interval=0.02)
            admin.execute("SELECT pg_cancel_backend(%s)", (conn.info.backend_pid,))
            commit.join(timeout=10)
        finally:
            faults.thaw(frozen)
        assert not commit.is_alive()
        assert watch.take(), "the commit returned without the cancelled-wait WARNING"
        assert conn.execute("SELECT count(*) FROM cancelled_wait").fetchone() == (1,)
    healthy.wait_healthy(HEALTHY_TIMEOUT)
