"""Issue 10.2: a raftpg restarted by its supervisor that finds itself the lease holder releases
the lease at once when its PostgreSQL is surely stopped — and never while a postmaster of its
data directory is still alive."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from raftpg.poll import wait_for
from raftpg.procfs import process_alive
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster
from tests.cluster.faults import FaultCluster as LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

TTL = 10  # long, so that the restarted raftpg surely finds its lease not yet expired


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    yield from make_cluster(request, ttl=TTL, loop_wait=1, retry_timeout=3, synchronous_mode="quorum",
                            dcs_extra={"primary_start_timeout": None})


def _holder_seen_by(cluster: LocalCluster, name: str) -> str | None:
    status, body = cluster.api_get(name, "/patroni", timeout=1.0)
    return body.get("raftpg", {}).get("lease_holder") if status == 200 and isinstance(body, dict) else "?"


def test_restarted_holder_with_postgres_down_releases_at_once(cluster: LocalCluster) -> None:
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    node = cluster.nodes[primary]
    log_offset = node.log_path.stat().st_size
    cluster.kill_node(primary)  # raftpg, postmaster and fence: PostgreSQL is surely stopped
    cluster.start_node(primary)
    new = cluster.wait_primary(TTL + 30, exclude=primary)
    log = node.log_path.read_text(errors="replace")[log_offset:]
    assert "releasing the lease at once" in log, log[-3000:]
    assert new != primary
    cluster.wait_healthy(HEALTHY_TIMEOUT)


def test_restarted_holder_never_releases_while_its_postmaster_lives(cluster: LocalCluster) -> None:
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    others = [n for n in cluster.nodes if n != primary]
    postmaster = cluster.nodes[primary].postmaster_pid()
    assert postmaster is not None
    os.kill(postmaster, signal.SIGSTOP)  # alive but not answering: it might still accept writes
    try:
        cluster.kill_raftpg(primary)
        cluster.start_node(primary)
        released_while_alive = []

        def lease_moved() -> bool:
            holders = {_holder_seen_by(cluster, other) for other in others}
            moved = bool(holders - {primary, "?", None}) or None in holders
            if moved and process_alive(postmaster):
                released_while_alive.append(holders)
            return moved

        wait_for(lease_moved, 6 * TTL, "the lease to leave the node whose postmaster was stopped")
        assert released_while_alive == [], f"the lease left {primary} while its postmaster lived"
    finally:
        if process_alive(postmaster):
            os.kill(postmaster, signal.SIGCONT)
    cluster.wait_healthy(HEALTHY_TIMEOUT)
