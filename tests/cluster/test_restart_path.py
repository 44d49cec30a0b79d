"""Issue 7.2/7.3: a postmaster crash of the primary in quorum mode, then kill -9 of the same node
0-3 s after a primary serves writes again, three times in a row — with failing over as the
default, and with restart in place asked for — under the safety checker: no acknowledged write
lost, never two writable primaries, every member streaming again without an operator."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from raftpg.poll import wait_for
from tests.cluster.conftest import make_cluster
from tests.cluster.faults import FaultCluster as LocalCluster
from tests.cluster.safety import SafetyChecker, Writer

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

RECOVERY = 5 + 10 + 45  # ttl + 10 s + slack for this shared 2-core machine (a rejoin may rewind or re-clone)
ROUNDS = 3


@pytest.fixture(scope="module", params=["failover-default", "restart-in-place"])
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    # Unset primary_start_timeout follows the mode (0 in quorum: fail over); 10 asks for restart in place.
    start_timeout = None if request.param == "failover-default" else 10
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2, synchronous_mode="quorum",
                            dcs_extra={"primary_start_timeout": start_timeout})


def _sync_published(cluster: LocalCluster, primary: str) -> bool:
    status, body = cluster.api_get(primary, "/cluster")
    sync = (body or {}).get("raftpg", {}).get("sync") or {} if status == 200 else {}
    return bool(sync.get("members")) and bool(sync.get("quorum"))


def _writes_served_after(writer: Writer, moment: float) -> bool:
    return any(at > moment for _, at, _ in writer.acked[-20:])


def _settled(cluster: LocalCluster) -> str:
    primary = cluster.wait_healthy(RECOVERY)
    wait_for(lambda: _sync_published(cluster, primary), 30, "the synchronous set to be published")
    return primary


def _round(cluster: LocalCluster, rng: random.Random) -> None:
    victim = _settled(cluster)
    with SafetyChecker(cluster) as checker:
        wait_for(lambda: len(checker.writer.acked) > 20, 30, "the writer to get acknowledgements")
        crashed_at = time.monotonic()
        cluster.kill_postmaster(victim)
        wait_for(lambda: _writes_served_after(checker.writer, crashed_at), RECOVERY,
                 "a primary to serve writes again after the postmaster crash")
        serving = cluster.primary()
        delay = rng.uniform(0.0, 3.0)
        time.sleep(delay)  # the second fault's delay, not a wait for a condition
        cluster.kill_node(victim)
        killed_at = time.monotonic()
        cluster.start_node(victim)
        wait_for(lambda: _writes_served_after(checker.writer, killed_at), RECOVERY,
                 "a primary to serve writes after the kill -9")
        primary = _settled(cluster)
        checker.verify()
    print(f"\npostmaster of {victim} killed, {serving} served writes, {victim} killed {delay:.1f}s later; "
          f"{primary} primary, {len(checker.writer.acked)} acknowledged, 0 lost")
    # Every member streams again, so the killed node rejoined without an operator.
    assert cluster.streaming_replicas(primary) == set(cluster.nodes) - {primary}


def test_postmaster_crash_then_kill_of_the_same_node(cluster: LocalCluster) -> None:
    rng = random.Random(20261205)
    for _ in range(ROUNDS):
        _round(cluster, rng)
