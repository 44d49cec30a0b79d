"""Raft membership on a real cluster: a fourth node added online (`ctl members add`, then started:
it clones and streams), a dead member removed (`ctl members remove`), and the three voters left
still fail over when the primary dies, which needs the added node's vote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from raftpg.devcluster import LocalCluster
from raftpg.poll import wait_for
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2)


def ctl(cluster: LocalCluster, via: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "raftpg.cli.main", "ctl", "-c", str(cluster.nodes[via].config_path), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTPG_")}
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90, env=env,
                          check=False)


def voters(cluster: LocalCluster, name: str) -> set[str] | None:
    status, body = cluster.api_get(name, "/raft")
    if status != 200 or not isinstance(body, dict):
        return None
    partners: Any = body.get("partners") or {}
    return {str(body["self_addr"]), *map(str, partners)}


def streams(cluster: LocalCluster, name: str) -> bool:
    status, body = cluster.api_get(name, "/patroni")
    return status == 200 and isinstance(body, dict) and body.get("replication_state") == "streaming"


def test_add_a_member_then_remove_a_dead_one(cluster: LocalCluster) -> None:
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    with psycopg.connect(cluster.dsn(primary), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS marks (v text)")
        conn.execute("INSERT INTO marks VALUES ('before the fourth node')")

    new = cluster.add_node()
    new_addr = cluster.raft_addr(new)
    added = ctl(cluster, primary, "members", "add", new_addr, "--force")
    assert added.returncode == 0, added.stdout + added.stderr
    cluster.start_node(new.name)
    wait_for(lambda: streams(cluster, new.name) or None, 120, f"{new.name} to clone and stream")
    everyone = {cluster.raft_addr(n) for n in cluster.nodes.values()}
    for name in cluster.nodes:
        wait_for(lambda name=name: voters(cluster, name) == everyone or None, 30,  # type: ignore[misc]
                 f"{name} to list the four Raft voters")
    with psycopg.connect(cluster.dsn(new.name), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM marks").fetchone()
    assert row is not None and row[0] >= 1

    dead = sorted(n for n in cluster.nodes if n not in (primary, new.name))[0]
    dead_addr = cluster.raft_addr(cluster.nodes[dead])
    cluster.kill_node(dead)
    removed = ctl(cluster, primary, "members", "remove", dead_addr, "--force")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    remaining = everyone - {dead_addr}
    alive = [n for n in cluster.nodes if n != dead]
    for name in alive:
        wait_for(lambda name=name: voters(cluster, name) == remaining or None, 30,  # type: ignore[misc]
                 f"{name} to list three Raft voters")

    # Three voters left, the primary dies: the other two (one of them the added node) must elect.
    cluster.kill_node(primary)
    successor = cluster.wait_primary(90, exclude=primary)
    assert successor in alive and successor != primary
    with psycopg.connect(cluster.dsn(successor), autocommit=True) as conn:
        conn.execute("INSERT INTO marks VALUES ('after the failover')")
        row = conn.execute("SELECT count(*) FROM marks").fetchone()
    assert row is not None and row[0] >= 2
