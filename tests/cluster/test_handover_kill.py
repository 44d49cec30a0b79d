"""Issue 7 (chaos seed 200): a switchover target killed after the hand-over, before it promoted.

The old primary stopped cleanly and the target had received everything up to its shutdown
checkpoint, so every acknowledged commit is on those two and maybe nowhere else. Here the third
member's WAL receiver is frozen during the writes, so it really lacks them: if it could take the
lease, acknowledged writes would be lost. The target's replay is paused so it holds the lease
without promoting (it waits to replay up to the hand-over LSN) — the window the kill must hit.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import psycopg
import pytest

from raftpg.devcluster import LocalCluster
from raftpg.poll import wait_for
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster
from tests.cluster.safety import SafetyChecker

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

TTL = 5


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    # primary_start_timeout unset: 0 in quorum mode, the default users get.
    yield from make_cluster(request, ttl=TTL, loop_wait=1, retry_timeout=2, synchronous_mode="quorum",
                            dcs_extra={"primary_start_timeout": None})


def _sql(cluster: LocalCluster, name: str, query: str) -> object:
    with psycopg.connect(cluster.dsn(name), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query).fetchone()
    return row[0] if row else None


def _lease_holder(cluster: LocalCluster, asked: str) -> str | None:
    status, body = cluster.api_get(asked, "/patroni", timeout=1.0)
    return body.get("raftpg", {}).get("lease_holder") if status == 200 and isinstance(body, dict) else None


def _acked_count(checker: SafetyChecker) -> int:
    return len(checker.writer.acked)


def test_target_killed_between_hand_over_and_promotion(cluster: LocalCluster) -> None:
    old = cluster.wait_healthy(HEALTHY_TIMEOUT)
    target, behind = sorted(n for n in cluster.nodes if n != old)
    receiver = _sql(cluster, behind, "SELECT pid FROM pg_stat_wal_receiver")
    assert isinstance(receiver, int), f"{behind} has no WAL receiver"
    with SafetyChecker(cluster, rate=50) as checker:
        wait_for(lambda: _acked_count(checker) >= 20 or None, 30, "a first batch of acknowledged writes")
        os.kill(receiver, signal.SIGSTOP)
        try:
            start = _acked_count(checker)
            wait_for(lambda: _acked_count(checker) >= start + 50 or None, 60,
                     f"writes acknowledged while {behind} receives nothing")
            _sql(cluster, target, "SELECT pg_wal_replay_pause()")
            status, body = cluster.api_request(old, "POST", "/switchover", {"leader": old, "candidate": target},
                                               timeout=1.0)
            assert status in (0, 200, 202, 503), (status, body)  # 0: it answers only once it is done
            wait_for(lambda: _lease_holder(cluster, behind) == target or None, 30,
                     f"the hand-over of the lease to {target}")
            assert _sql(cluster, target, "SELECT pg_is_in_recovery()") is True, "the target promoted already"
            cluster.kill_node(target)
        finally:
            os.kill(receiver, signal.SIGCONT)
        # The old primary holds every acknowledged write; the member that lacks them must not win.
        new = cluster.wait_primary(12 * TTL)
        assert new == old, f"{new} became primary although {old} holds the writes it may lack"
        checker.verify()
    cluster.start_node(target)
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) == old
