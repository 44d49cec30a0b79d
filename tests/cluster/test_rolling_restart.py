"""`raftpg ctl rolling-restart` on a real 3-node cluster with a writer running: every member's
PostgreSQL restarted once, one switchover, nothing lost, never two writable primaries, resumed at
the end; a run killed after its first replica is visible in every member's API, refused to a second
ctl while it looks alive, and taken over and finished from another member without restarting
members again; refusal when unhealthy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from raftpg.devcluster import LocalCluster
from raftpg.devcluster.supervisor import Supervisor
from raftpg.poll import wait_for
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster
from tests.cluster.safety import SafetyChecker

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

CTL_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    # ttl 10: with --daemon the primary's new raftpg must reclaim its lease before the fence fires
    # (ttl - margin after the old one's last renewal); on a loaded 2-core machine starting a raftpg
    # took 3.8 s, past the 4 s of ttl 5 with the polling around it.
    yield from make_cluster(request, ttl=10, loop_wait=1, retry_timeout=2)


def ctl_argv(cluster: LocalCluster, *args: str, via: str | None = None) -> list[str]:
    """ctl talks to `via`'s REST API (its node.yml); by default the first member running."""
    if via is None:
        via = next(n for n, node in cluster.nodes.items() if node.raftpg_pid() is not None)
    return [sys.executable, "-m", "raftpg.cli.main", "ctl", "-c", str(cluster.nodes[via].config_path),
            "rolling-restart", "--force", *args]


def ctl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTPG_")}
    env["COLUMNS"] = "200"
    return env


def rolling(cluster: LocalCluster, *args: str, via: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ctl_argv(cluster, *args, via=via), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=CTL_TIMEOUT, env=ctl_env(), check=False)


def operation(cluster: LocalCluster, name: str) -> dict[str, Any]:
    """The rolling_restart record as `name`'s REST API shows it ({name, revision, record})."""
    status, body = cluster.api_get(name, "/operations/rolling_restart")
    assert status == 200 and isinstance(body, dict), (status, body)
    return body


def start_times(cluster: LocalCluster) -> dict[str, float]:
    found = {}
    for name in cluster.nodes:
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            row = conn.execute("SELECT extract(epoch FROM pg_postmaster_start_time())::float8").fetchone()
        assert row is not None
        found[name] = float(row[0])
    return found


def switchovers(cluster: LocalCluster, name: str) -> int:
    status, body = cluster.api_get(name, "/history")
    assert status == 200 and isinstance(body, list)
    return len(body)


def paused(cluster: LocalCluster, name: str) -> bool:
    status, body = cluster.api_get(name, "/cluster")
    return status == 200 and isinstance(body, dict) and bool(body.get("pause"))


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


def test_refused_when_a_member_is_down(cluster: LocalCluster) -> None:
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    replica = sorted(n for n in cluster.nodes if n != primary)[0]
    assert cluster.stop_node(replica) == 0
    try:
        result = rolling(cluster)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "rolling restart refused" in result.stderr and replica in result.stderr
        assert not paused(cluster, primary)
    finally:
        cluster.start_node(replica)
    cluster.wait_healthy(HEALTHY_TIMEOUT)


def test_dry_run_changes_nothing(cluster: LocalCluster) -> None:
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    before = start_times(cluster)
    result = rolling(cluster, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "switchover" in result.stdout and all(name in result.stdout for name in cluster.nodes)
    assert start_times(cluster) == before and not paused(cluster, primary)
    assert operation(cluster, primary)["record"] is None


def test_rolling_restart_with_a_writer(cluster: LocalCluster) -> None:
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    before = start_times(cluster)
    history = switchovers(cluster, primary)
    with SafetyChecker(cluster) as checker:
        wait_for(lambda: len(checker.writer.acked) > 50 or None, 30, "the writer to get going")
        began = time.monotonic()
        doc = summary(rolling(cluster, "--format", "json"))
        new_primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
        gap = checker.writer.max_gap(began)
        checker.verify()
    after = start_times(cluster)
    assert all(after[name] != before[name] for name in cluster.nodes), (before, after)
    assert new_primary != primary
    assert switchovers(cluster, new_primary) == history + 1
    assert not paused(cluster, new_primary) and operation(cluster, new_primary)["record"] is None
    print(f"\nrolling restart: total {doc['total_seconds']:.1f}s, longest write gap {gap:.2f}s, "
          f"{len(checker.writer.acked)} acknowledged writes, 0 lost; steps {doc['steps']}")


def test_interrupted_run_is_taken_over_from_another_member(cluster: LocalCluster) -> None:
    """ctl killed (-9) after the first replica: the run stays in Raft, every member shows it, a
    second ctl through another member's API is refused while the run looks alive, then takes it
    over with --take-over and finishes it; a writer runs throughout, nothing is lost."""
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    before = start_times(cluster)
    with SafetyChecker(cluster) as checker:
        wait_for(lambda: len(checker.writer.acked) > 50 or None, 30, "the writer to get going")
        process = subprocess.Popen(ctl_argv(cluster, via=primary), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ctl_env())
        try:
            def first_done() -> set[str] | None:
                now = start_times_quiet(cluster)
                changed = {n for n, t in now.items() if t is not None and t != before[n]}
                return changed or None

            done = wait_for(first_done, 120, "a first member restarted by the rolling restart")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        assert paused(cluster, primary)
        for name in cluster.nodes:
            wait_for(lambda name=name: operation(cluster, name)["record"] is not None or None,  # type: ignore[misc]
                     10, f"{name}'s API to show the run in progress")
        record = operation(cluster, primary)["record"]
        assert record["owner"]["pid"] == process.pid and record["old_primary"] == primary, record
        other = next(n for n in sorted(cluster.nodes) if n != primary)
        refused = rolling(cluster, via=other)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"pid {process.pid}" in refused.stderr and "--take-over" in refused.stderr, refused.stderr
        cluster.wait_healthy(HEALTHY_TIMEOUT)
        at_kill = start_times(cluster)
        result = rolling(cluster, "--take-over", via=other)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "continuing an interrupted run" in result.stdout
        new_primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
        checker.verify()
    after = start_times(cluster)
    for name in done:
        assert after[name] == at_kill[name], f"{name} was restarted again by the resumed run"
    assert all(after[name] != before[name] for name in cluster.nodes), (before, after)
    assert new_primary != primary and not paused(cluster, new_primary)
    assert operation(cluster, new_primary)["record"] is None
    print(f"\ninterrupted rolling restart taken over from {other}: {len(checker.writer.acked)} "
          "acknowledged writes, 0 lost")


def test_rolling_restart_of_postgres_and_raftpg_with_a_writer(cluster: LocalCluster) -> None:
    """--daemon: every raftpg process replaced too (as after installing a new binary), the
    primary's under pause keeping its lease; still one switchover, nothing lost."""
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    before = start_times(cluster)
    pids = {name: node.raftpg_pid() for name, node in cluster.nodes.items()}
    history = switchovers(cluster, primary)
    with Supervisor(cluster) as supervisor, SafetyChecker(cluster) as checker:
        wait_for(lambda: len(checker.writer.acked) > 50 or None, 30, "the writer to get going")
        began = time.monotonic()
        doc = summary(rolling(cluster, "--format", "json", "--daemon"))
        new_primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
        gap = checker.writer.max_gap(began)
        checker.verify()
    after = start_times(cluster)
    assert all(after[name] != before[name] for name in cluster.nodes), (before, after)
    replaced = {name: node.raftpg_pid() for name, node in cluster.nodes.items()}
    assert all(replaced[name] not in (None, pids[name]) for name in cluster.nodes), (pids, replaced)
    assert sorted(r.node for r in supervisor.restarts) == sorted(cluster.nodes)
    daemon_steps = [s for s in doc["steps"] if s["action"] == "restart raftpg"]
    assert sorted(s["member"] for s in daemon_steps) == sorted(cluster.nodes)
    assert new_primary != primary
    assert switchovers(cluster, new_primary) == history + 1  # the primary's raftpg restart moved nothing
    assert not paused(cluster, new_primary) and operation(cluster, new_primary)["record"] is None
    primary_step = next(s for s in daemon_steps if s["member"] == primary)
    print(f"\nrolling restart --daemon: total {doc['total_seconds']:.1f}s, longest write gap {gap:.2f}s, "
          f"primary's raftpg replaced in {primary_step['took_seconds']:.1f}s, "
          f"{len(checker.writer.acked)} acknowledged writes, 0 lost; steps {doc['steps']}")


def start_times_quiet(cluster: LocalCluster) -> dict[str, float | None]:
    """Start times, None for a member whose PostgreSQL does not answer right now."""
    found: dict[str, float | None] = {}
    for name in cluster.nodes:
        try:
            with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
                row = conn.execute("SELECT extract(epoch FROM pg_postmaster_start_time())::float8").fetchone()
            found[name] = float(row[0]) if row else None
        except psycopg.Error:
            found[name] = None
    return found
