"""Two PostgreSQL members and a witness (a Raft vote, no PostgreSQL) on a real cluster: the witness is
listed but never serves and its /metrics say it is a witness, and when the primary's node dies the
survivor and the witness are the Raft majority that lets the other database member take over
without losing an acknowledged write; the dead node comes back as a streaming replica. Then
`ctl rolling-restart --daemon` replaces every raftpg, the witness's first and on its own.
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

from raftpg.devcluster.supervisor import Supervisor
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


def ctl(cluster: FaultCluster, via: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "raftpg.cli.main", "ctl", "-c", str(cluster.nodes[via].config_path), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTPG_")}
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def ctl_list(cluster: FaultCluster, via: str) -> list[dict[str, Any]]:
    done = ctl(cluster, via, "list", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    members: list[dict[str, Any]] = json.loads(done.stdout)
    return members


def witness_listed(cluster: FaultCluster, via: str) -> dict[str, Any] | None:
    return next((m for m in ctl_list(cluster, via) if m["Member"] == WITNESS), None)


def witness_gauge(cluster: FaultCluster, name: str) -> tuple[float, str]:
    """The raftpg_witness sample of `name`'s /metrics, and the whole text."""
    status, text = cluster.api_get(name, "/metrics")
    assert status == 200 and isinstance(text, str), (status, text)
    sample = f'raftpg_witness{{scope="{cluster.scope}",name="{name}"}} '
    values = [float(line[len(sample):]) for line in text.splitlines() if line.startswith(sample)]
    assert len(values) == 1 and "# TYPE raftpg_witness gauge" in text, text
    return values[0], text


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
    value, metrics = witness_gauge(cluster, WITNESS)
    assert value == 1 and "raftpg_postgres_running" not in metrics, metrics
    assert f'raftpg_raft_has_quorum{{scope="{cluster.scope}",name="{WITNESS}"}} 1' in metrics, metrics
    assert witness_gauge(cluster, old)[0] == 0
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
    back = witness_listed(cluster, old)
    assert back is not None and back["Role"] == "Witness"


def test_rolling_restart_daemon_replaces_the_witness_first(cluster: FaultCluster) -> None:
    """--daemon replaces the witness's raftpg too: right after the pause, on its own (it holds one of
    the three Raft votes), waited for until it votes again; then the database members as usual,
    one switchover, nothing lost."""
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    # ttl 10 from here on, as in test_rolling_restart.py: the paused primary's new raftpg must
    # reclaim its lease before its fence fires, and on a loaded 2-core host a start took 3.8 s.
    status, body = cluster.api_request(primary, "PATCH", "/config", {"ttl": 10})
    assert status == 200, body

    def lease_time_left() -> float | None:
        doc = cluster.api_get(primary, "/patroni")[1]
        left = doc.get("raftpg", {}).get("lease_time_left") if isinstance(doc, dict) else None
        return left if isinstance(left, float | int) and left > 6 else None

    wait_for(lease_time_left, 30, "the primary's lease renewed with ttl 10")
    pids = {name: node.raftpg_pid() for name, node in cluster.nodes.items()}
    history = cluster.api_get(primary, "/history")[1]
    with Supervisor(cluster) as supervisor, SafetyChecker(cluster) as checker:
        wait_for(lambda: len(checker.writer.acked) > 20 or None, 20, "writes acknowledged before the run")
        done = ctl(cluster, primary, "rolling-restart", "--daemon", "--force", "--format", "json", timeout=200)
        assert done.returncode == 0, done.stdout + done.stderr
        new_primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
        checker.verify()
    steps = [(s["member"], s["action"]) for s in json.loads(done.stdout)["steps"]]
    assert steps[:2] == [("cluster", "pause"), (WITNESS, "restart raftpg")], steps
    assert sorted(m for m, action in steps if action == "restart raftpg") == sorted(cluster.nodes), steps
    assert sorted(r.node for r in supervisor.restarts) == sorted(cluster.nodes)
    replaced = {name: node.raftpg_pid() for name, node in cluster.nodes.items()}
    assert all(replaced[name] not in (None, pids[name]) for name in cluster.nodes), (pids, replaced)
    assert new_primary != primary and len(cluster.api_get(new_primary, "/history")[1]) == len(history) + 1
    status, patroni = cluster.api_get(WITNESS, "/patroni")
    assert status == 200 and patroni["role"] == "witness" and patroni["raftpg"]["raft"]["has_quorum"] is True
    assert witness_gauge(cluster, WITNESS)[0] == 1
    assert cluster.api_get(new_primary, "/operations/rolling_restart")[1]["record"] is None
    doc = json.loads(done.stdout)
    witness_took = next(s["took_seconds"] for s in doc["steps"] if s["member"] == WITNESS)
    print(f"\nrolling restart --daemon with a witness: total {doc['total_seconds']:.1f}s, the witness's raftpg "
          f"replaced in {witness_took:.1f}s, {len(checker.writer.acked)} acknowledged writes, 0 lost; "
          f"steps {doc['steps']}")
