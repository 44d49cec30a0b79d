"""A 5-member cluster in quorum mode (issue 10.5): bootstrap, crash failover to a synchronous
standby without losing an acknowledged write, rejoin; and a smoke run of benchmarks/scale.py's
measurement on the same cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from benchmarks.scale import measure
from raftpg.devcluster import LocalCluster
from raftpg.poll import wait_for
from tests.cluster.conftest import make_cluster
from tests.cluster.safety import SafetyChecker

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

MEMBERS = 5
BOOTSTRAP_TIMEOUT = 150.0  # five initdb/basebackups on a shared 2-core machine
RECOVERY = 5 + 10 + 30  # ttl + 10 s + slack for the shared machine


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    yield from make_cluster(request, lambda c: c.wait_healthy(BOOTSTRAP_TIMEOUT), size=MEMBERS, ttl=5,
                            loop_wait=1, retry_timeout=2, synchronous_mode="quorum")


def sync_members(cluster: LocalCluster, primary: str) -> set[str]:
    """The quorum set the primary's replicated state names, empty until published."""
    status, body = cluster.api_get(primary, "/cluster")
    if status != 200 or not isinstance(body, dict):
        return set()
    sync = body.get("raftpg", {}).get("sync") or {}
    return set(sync.get("members") or []) if sync.get("quorum") else set()


def quorum_states(cluster: LocalCluster, primary: str) -> dict[str, str]:
    """application_name -> sync_state, from the primary's pg_stat_replication."""
    with psycopg.connect(cluster.dsn(primary), autocommit=True) as conn:
        rows = conn.execute("SELECT application_name, sync_state FROM pg_stat_replication").fetchall()
    return {str(name): str(state) for name, state in rows}


def test_bootstrap_one_primary_four_streaming_in_quorum(cluster: LocalCluster) -> None:
    primary = cluster.wait_healthy(60)
    assert cluster.primaries() == [primary]
    others = set(cluster.nodes) - {primary}
    assert len(others) == MEMBERS - 1
    assert cluster.streaming_replicas(primary) == others
    members = wait_for(lambda: sync_members(cluster, primary), 30, "the quorum set to be published")
    assert members <= others
    states = wait_for(lambda: {n: s for n, s in quorum_states(cluster, primary).items() if s == "quorum"}
                      or None, 30, "quorum standbys in pg_stat_replication")
    assert set(states) == members, (states, members)


def test_kill_primary_node_fails_over_to_a_synchronous_standby_and_it_rejoins(cluster: LocalCluster) -> None:
    old = cluster.wait_healthy(60)
    members = wait_for(lambda: sync_members(cluster, old), 30, "the quorum set to be published")
    with SafetyChecker(cluster) as checker:
        time.sleep(1)
        cluster.kill_node(old)
        new = cluster.wait_primary(RECOVERY, exclude=old)
        time.sleep(1)
        checker.verify()
    assert new in members, f"{new} was promoted but the quorum set was {sorted(members)}"
    cluster.start_node(old)
    assert cluster.wait_healthy(90) == new
    assert old in cluster.streaming_replicas(new)
    wait_for(lambda: sync_members(cluster, new), 30, "the quorum set after the failover")


def test_scale_measurement_smoke(cluster: LocalCluster) -> None:
    """benchmarks/scale.py's measurement on this cluster: every figure is present and plausible."""
    result = measure(cluster, seconds=5, latency_seconds=5)
    assert result.members == MEMBERS
    assert set(result.nodes) == set(cluster.nodes)
    assert all(cost.raftpg_rss_mib > 0 for cost in result.nodes.values())
    # The leader heartbeats every follower several times a second; every member answers.
    assert all(cost.raft_segments_per_s > 0 for cost in result.nodes.values()), result.nodes
    assert result.commits_per_s > 0, "the lease holder renews through Raft: the log must grow"
    assert result.renewals_seen > 0 and 0 < result.renewal_delay_ms["median"] < cluster.ttl * 1000
