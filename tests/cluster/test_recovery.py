"""Losing the Raft majority for good, and the documented recovery from one survivor."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from raftpg.devcluster import LocalCluster
from raftpg.poll import wait_for
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

    with psycopg.connect(cluster.dsn(survivor), autocommit=True) as conn:
        conn.execute("INSERT INTO before_loss VALUES (43)")  # acknowledged by the recovered cluster
    history = _history(cluster, survivor)

    # Back to three: `raftpg rejoin` on the lost members, restart the survivor normally, start them.
    # The lost members start first, on purpose: two wiped members are a Raft majority, and unless
    # they hold back from elections they would elect an empty log over the survivor's.
    for name in lost:
        assert "removed" in cluster.rejoin(name)
    cluster.stop_node(survivor, timeout=60)
    for name in lost:
        cluster.start_node(name)
    wait_for(lambda: all("rejoining" in cluster.nodes[n].log_path.read_text() for n in lost), 30,
             "the lost members to start as rejoining")
    cluster.start_node(survivor)
    assert cluster.wait_healthy(120) == survivor
    assert _sysid(cluster, survivor) == sysid
    for name in cluster.nodes:
        assert wait_for(lambda n=name: _history(cluster, n)[:len(history)] == history, 30,  # type: ignore[misc]
                        f"the recovered history on {name}")
        assert wait_for(lambda n=name: _row_on(cluster, n, 43), 30, f"the rows on {name}")  # type: ignore[misc]
        assert not (cluster.nodes[name].raft_dir / "rejoining").exists()


def _row_on(cluster: LocalCluster, name: str, value: int = 42) -> bool:
    try:
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM before_loss WHERE v = %s", (value,)).fetchone() == (1,)
    except psycopg.Error:
        return False


def _history(cluster: LocalCluster, name: str) -> list[object]:
    status, body = cluster.api_get(name, "/history")
    assert status == 200 and isinstance(body, list), (status, body)
    return body
