"""Losing the Raft majority for good, and the documented recovery from one survivor."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import psycopg
import pytest

from raftpg.cli.launcher import LocalCluster, wait_for
from tests.cluster.conftest import make_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2)


def _sysid(cluster: LocalCluster, name: str) -> str:
    status, body = cluster.api_get(name, "/patroni")
    assert status == 200, body
    return str(body["database_system_identifier"])


def test_survivor_recovers_the_cluster_after_losing_quorum(cluster: LocalCluster) -> None:
    primary = cluster.wait_healthy(60)
    sysid = _sysid(cluster, primary)
    with psycopg.connect(cluster.dsn(primary), autocommit=True) as conn:
        conn.execute("CREATE TABLE before_loss (v int)")
        conn.execute("INSERT INTO before_loss VALUES (42)")
    survivor = sorted(n for n in cluster.nodes if n != primary)[0]
    lost = [n for n in cluster.nodes if n != survivor]
    wait_for(lambda: _row_on(cluster, survivor), 20, "the row on the survivor")
    for name in lost:
        cluster.kill_node(name)
    # No majority: nobody may become primary.
    assert cluster.primaries() == []
    cluster.stop_node(survivor, timeout=60)

    # Without --force the recovery refuses and explains itself.
    cluster.start_node(survivor, ["--recover-quorum"])
    node = cluster.nodes[survivor]
    assert node.process is not None and node.process.wait(timeout=30) == 2
    assert "Repeat with --force" in node.log_path.read_text()

    cluster.start_node(survivor, ["--recover-quorum", "--force"])
    assert cluster.wait_primary(60) == survivor
    assert _sysid(cluster, survivor) == sysid
    assert _row_on(cluster, survivor)

    # Back to three: wipe the lost members' Raft state, restart the survivor normally, start them.
    for name in lost:
        shutil.rmtree(cluster.nodes[name].raft_dir)
    cluster.stop_node(survivor, timeout=60)
    cluster.start_node(survivor)
    for name in lost:
        cluster.start_node(name)
    assert cluster.wait_healthy(120) is not None
    for name in cluster.nodes:
        assert wait_for(lambda n=name: _row_on(cluster, n), 30, f"the row on {name}")  # type: ignore[misc]


def _row_on(cluster: LocalCluster, name: str) -> bool:
    try:
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM before_loss WHERE v = 42").fetchone() == (1,)
    except psycopg.Error:
        return False
