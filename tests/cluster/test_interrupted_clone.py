"""A member's raftpg killed -9 while its pg_basebackup runs heals on restart (68261a9): the orphaned
pg_basebackup (kept frozen here, so it is still 'writing' when raftpg comes back) is stopped, the
partial copy is moved aside next to the data directory, never deleted, and the member clones again
and streams."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from raftpg.poll import wait_for, wait_until
from raftpg.postgres.datadir import programs_writing
from raftpg.procfs import process_alive
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster
from tests.cluster.faults import FaultCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

FILLER_ROWS = 40_000  # ~40 MB: the clone runs long enough to be caught by a /proc scan
ATTEMPTS = 3  # a clone that finished before it could be frozen is tried again


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[FaultCluster]:
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2)


def _frozen_clone(cluster: FaultCluster, name: str) -> int | None:
    """Start `name` without a data directory, catch its pg_basebackup, freeze it and kill raftpg -9.
    Returns the frozen orphan's PID, or None if the clone finished before it could be caught."""
    node = cluster.nodes[name]
    cluster.kill_node(name)
    shutil.rmtree(node.data_dir)
    cluster.start_node(name)
    found: list[int] = []

    def caught_or_done() -> bool:
        found[:] = programs_writing(node.data_dir, "pg_basebackup")
        writing = bool(found) and node.data_dir.is_dir() and any(node.data_dir.iterdir())
        return writing or node.postmaster_pid() is not None

    wait_for(caught_or_done, HEALTHY_TIMEOUT, f"{name}'s pg_basebackup to write", interval=0.005)
    if not found:
        return None
    try:
        os.kill(found[0], signal.SIGSTOP)
    except ProcessLookupError:
        return None
    if not process_alive(found[0]):  # exited, not yet reaped: the clone is over
        return None
    cluster.kill_raftpg(name)
    return found[0]


def test_raftpg_killed_during_its_clone_heals_on_restart(cluster: FaultCluster) -> None:
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    with psycopg.connect(cluster.dsn(primary), autocommit=True) as conn:
        conn.execute("CREATE TABLE filler AS SELECT i, repeat('x', 900) AS pad FROM generate_series(1, %s) AS i",
                     (FILLER_ROWS,))
    victim = sorted(set(cluster.databases()) - {primary})[0]
    node = cluster.nodes[victim]
    marker = node.data_dir.with_name(f"{node.data_dir.name}.cloning")
    orphan = None
    for _ in range(ATTEMPTS):
        orphan = _frozen_clone(cluster, victim)
        if orphan is not None:
            break
    assert orphan is not None, f"{victim}'s clone finished each time before it could be caught"
    try:
        assert marker.exists(), "the killed raftpg left no clone marker"

        cluster.start_node(victim)
        assert wait_until(lambda: not process_alive(orphan), 60, 0.05), "the orphaned pg_basebackup was not stopped"
        cluster.wait_healthy(HEALTHY_TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)
    assert victim in cluster.streaming_replicas(cluster.primary() or primary)
    assert not marker.exists()
    moved = sorted(Path(node.data_dir.parent).glob(f"{node.data_dir.name}.*.moved"))
    assert moved and any(moved[-1].iterdir()), "the partial copy was not kept next to the data directory"
    with psycopg.connect(cluster.dsn(victim)) as conn:
        row = conn.execute("SELECT count(*) FROM filler").fetchone()
    assert row is not None and row[0] == FILLER_ROWS
    log = node.log_path.read_text(errors="replace")
    assert f"stopping pg_basebackup {orphan}" in log and "an interrupted pg_basebackup left a partial copy" in log
    print(f"\n{victim}'s raftpg killed during its clone (pg_basebackup {orphan} frozen); on restart the orphan was "
          f"stopped, the partial copy moved to {moved[-1].name}, and {victim} cloned again and streams")
