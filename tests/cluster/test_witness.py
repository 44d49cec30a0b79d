"""Two PostgreSQL members and a witness (a Raft vote, no PostgreSQL) on a real cluster: the witness is
listed but never serves, and when the primary's node dies the survivor and the witness are the Raft
majority that lets the other database member take over without losing an acknowledged write; the
dead node comes back as a streaming replica.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from raftpg.poll import wait_for
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster
from tests.cluster.faults import FaultCluster
from tests.cluster.safety import SafetyChecker

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

WITNESS = "witness1"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[FaultCluster]:
    yield from make_cluster(request, size=2, witnesses=1, ttl=5, loop_wait=1, retry_timeout=2,
                            synchronous_mode="quorum")


def ctl_list(cluster: FaultCluster, via: str) -> list[dict[str, Any]]:
    argv = [sys.executable, "-m", "raftpg.cli.main", "ctl", "-c", str(cluster.nodes[via].config_path),
            "list", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTPG_")}
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=env,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    members: list[dict[str, Any]] = json.loads(done.stdout)
    return members


def witness_listed(cluster: FaultCluster, via: str) -> dict[str, Any] | None:
    return next((m for m in ctl_list(cluster, via) if m["Member"] == WITNESS), None)


def test_two_databases_and_a_witness(cluster: FaultCluster) -> None:
    old = cluster.wait_healthy(HEALTHY_TIMEOUT)
    survivor = next(name for name in cluster.databases() if name != old)
    listed = wait_for(lambda: witness_listed(cluster, old), 30, "ctl list to show the witness")
    assert (listed["Role"], listed["State"]) == ("Witness", "running")

    status, patroni = cluster.api_get(WITNESS, "/patroni")
    assert status == 200 and patroni["role"] == "witness" and patroni["raftpg"]["lease_holder"] == old
    assert patroni["raftpg"]["raft"]["has_quorum"] is True
    assert cluster.api_get(WITNESS, "/health")[0] == 200
    for path in ("/primary", "/replica", "/read-only"):
        assert cluster.api_get(WITNESS, path)[0] == 503, path
    assert cluster.nodes[WITNESS].postmaster_pid() is None
    # No replication slot for the witness on the primary: only the other database member's.
    with psycopg.connect(cluster.dsn(old), autocommit=True) as conn:
        slots = [row[0] for row in conn.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1")]
    assert slots == [survivor]

    with SafetyChecker(cluster) as checker:
        wait_for(lambda: len(checker.writer.acked) > 20 or None, 20, "writes acknowledged before the kill")
        cluster.kill_node(old)
        new = cluster.wait_primary(cluster.ttl + 30, exclude=old)
        acked = len(checker.writer.acked)
        wait_for(lambda: len(checker.writer.acked) > acked + 20 or None, 30, "writes acknowledged by the new primary")
        checker.verify()
    assert new == survivor

    cluster.start_node(old)
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) == survivor
    assert cluster.streaming_replicas(survivor) == {old}
    listed = witness_listed(cluster, old)
    assert listed is not None and listed["Role"] == "Witness"
