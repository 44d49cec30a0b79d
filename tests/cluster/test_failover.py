"""The core promises on a real 3-node cluster: replicate, fail over, restart in place, fence, hand over."""

from __future__ import annotations

import signal
import time

import psycopg
import pytest

from raftpg.poll import wait_for
from tests.cluster.faults import FaultCluster as LocalCluster
from tests.cluster.safety import SafetyChecker

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def timeline(cluster: LocalCluster, name: str) -> int | None:
    status, body = cluster.api_get(name, "/patroni")
    return body.get("timeline") if status == 200 and isinstance(body, dict) else None


def lease_version(cluster: LocalCluster, name: str) -> int:
    status, body = cluster.api_get(name, "/patroni")
    assert status == 200 and isinstance(body, dict), body
    return int(body["raftpg"]["lease_version"])


def test_bootstrap_replicates_to_both_replicas(healthy: LocalCluster) -> None:
    primary = healthy.wait_healthy(30)
    with psycopg.connect(healthy.dsn(primary), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS hello (v text)")
        conn.execute("INSERT INTO hello VALUES ('replicated')")
    replicas = [n for n in healthy.nodes if n != primary]
    for name in replicas:
        def seen(name: str = name) -> bool:
            try:
                with psycopg.connect(healthy.dsn(name), autocommit=True) as conn:
                    return conn.execute("SELECT count(*) FROM hello WHERE v = 'replicated'").fetchone() == (1,)
            except psycopg.Error:
                return False
        wait_for(seen, 20, f"the row on {name}")
        assert healthy.api_get(name, "/replica")[0] == 200
        assert healthy.api_get(name, "/primary")[0] == 503
    assert healthy.api_get(primary, "/primary")[0] == 200
    assert healthy.api_get(primary, "/replica")[0] == 503


def test_kill_primary_node_fails_over_and_old_node_rejoins(healthy: LocalCluster) -> None:
    old = healthy.wait_healthy(30)
    old_timeline = timeline(healthy, old)
    with SafetyChecker(healthy) as checker:
        time.sleep(1)
        healthy.kill_node(old)
        new = healthy.wait_primary(healthy.ttl + 20, exclude=old)
        time.sleep(1)
        checker.verify()
    assert new != old
    healthy.start_node(old)
    assert healthy.wait_healthy(90) == new
    new_timeline = timeline(healthy, old)
    assert new_timeline is not None and old_timeline is not None and new_timeline > old_timeline


def test_kill_postmaster_restarts_in_place_without_failover(healthy: LocalCluster) -> None:
    """Asynchronous mode restarts in place, on the same timeline: the standbys keep following it
    and nothing forks a timeline another member could fork again (issue 7.3)."""
    primary = healthy.wait_healthy(30)
    version = lease_version(healthy, primary)
    old_timeline = timeline(healthy, primary)
    old_pid = healthy.nodes[primary].postmaster_pid()
    healthy.kill_postmaster(primary)
    wait_for(lambda: healthy.nodes[primary].postmaster_pid() not in (None, old_pid), 30,
             "PostgreSQL to be restarted in place")
    assert healthy.wait_healthy(60) == primary
    assert lease_version(healthy, primary) == version, "the lease changed hands: a failover happened"
    assert old_timeline is not None and timeline(healthy, primary) == old_timeline, "a timeline was forked"


def test_kill_raftpg_on_primary_fences_before_anyone_promotes(healthy: LocalCluster) -> None:
    primary = healthy.wait_healthy(30)
    with SafetyChecker(healthy) as checker:
        time.sleep(0.5)
        healthy.kill_raftpg(primary)
        node = healthy.nodes[primary]
        wait_for(lambda: node.postmaster_pid() is None, healthy.ttl + 5, "the fence to stop PostgreSQL")
        new = healthy.wait_primary(healthy.ttl + 20, exclude=primary)
        time.sleep(1)
        checker.verify()
    fence_log = (node.raft_dir / "fence.log").read_text()
    assert "fencing" in fence_log, fence_log
    assert new != primary
    healthy.start_node(primary)
    healthy.wait_healthy(90)


def test_raftpg_restarted_within_ttl_keeps_primary(healthy: LocalCluster) -> None:
    primary = healthy.wait_healthy(30)
    postmaster = healthy.nodes[primary].postmaster_pid()
    healthy.kill_raftpg(primary)
    healthy.start_node(primary)
    assert healthy.wait_healthy(30) == primary
    assert healthy.nodes[primary].postmaster_pid() == postmaster, "PostgreSQL was restarted or fenced"


def test_sigstop_primary_raftpg_then_sigcont_no_two_primaries(healthy: LocalCluster) -> None:
    primary = healthy.wait_healthy(30)
    with SafetyChecker(healthy) as checker:
        time.sleep(0.5)
        healthy.kill_raftpg(primary, signal.SIGSTOP)
        try:
            new = healthy.wait_primary(healthy.ttl * 2 + 20, exclude=primary)
            time.sleep(max(0.0, healthy.ttl * 2 - healthy.ttl))
        finally:
            healthy.kill_raftpg(primary, signal.SIGCONT)
        assert healthy.wait_healthy(90) == new
        checker.verify()
    assert new != primary


def test_killing_raft_leader_on_a_replica_causes_no_failover(healthy: LocalCluster) -> None:
    primary = healthy.wait_healthy(30)
    version = lease_version(healthy, primary)

    def raft_leader_replica() -> str | None:
        for name in healthy.nodes:
            if name == primary:
                continue
            status, body = healthy.api_get(name, "/raft")
            if status == 200 and body.get("is_leader"):
                return name
        return None

    leader = raft_leader_replica()
    if leader is None:
        pytest.skip("the Raft leader is the PostgreSQL primary this time; covered by the crash test")
    healthy.kill_node(leader)
    time.sleep(healthy.ttl * 1.5)
    assert healthy.primary() == primary
    assert lease_version(healthy, primary) == version
    healthy.start_node(leader)
    healthy.wait_healthy(90)


def test_clean_stop_of_primary_hands_over_fast(healthy: LocalCluster) -> None:
    primary = healthy.wait_healthy(30)
    with SafetyChecker(healthy) as checker:
        time.sleep(1)
        started = time.monotonic()
        healthy.stop_node(primary)
        new = healthy.wait_primary(healthy.ttl + 10, exclude=primary)
        handover = time.monotonic() - started
        time.sleep(1)
        checker.verify()
    assert new != primary
    log = healthy.nodes[primary].log_path.read_text()
    assert f"lease handed to {new}" in log, "the lease expired instead of being handed over"
    print(f"hand-over after a clean stop: {handover:.2f}s")
    healthy.start_node(primary)
    healthy.wait_healthy(90)


def test_full_cluster_cold_restart_keeps_identity_config_and_history(healthy: LocalCluster) -> None:
    primary = healthy.wait_healthy(30)
    _, before = healthy.api_get(primary, "/patroni")
    _, config_before = healthy.api_get(primary, "/config")
    _, history_before = healthy.api_get(primary, "/history")
    healthy.stop()
    healthy.start()
    after_primary = healthy.wait_healthy(120)
    _, after = healthy.api_get(after_primary, "/patroni")
    _, config_after = healthy.api_get(after_primary, "/config")
    _, history_after = healthy.api_get(after_primary, "/history")
    assert after["database_system_identifier"] == before["database_system_identifier"]
    assert config_after == config_before
    assert history_after[: len(history_before)] == history_before
