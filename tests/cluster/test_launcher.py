"""The local-cluster launcher that tests, the demo and the benchmarks stand on."""

from __future__ import annotations

import shutil

import pytest

from raftpg.poll import wait_for
from raftpg.procfs import process_alive
from tests.cluster.conftest import scratch_dir
from tests.cluster.faults import FaultCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(60)]


def test_a_node_that_cannot_start_fails_the_wait_at_once_with_its_log() -> None:
    base = scratch_dir("raftpg-test_launcher-")
    cluster = FaultCluster(base_dir=base, ttl=3, loop_wait=1, retry_timeout=2)  # 1 + 2*2 > ttl: refused
    cluster.start()
    try:
        with pytest.raises(RuntimeError, match=r"exited with code 2:(.|\n)*retry_timeout"):
            cluster.wait_healthy(45)
    finally:
        cluster.stop()
    assert all(node.raftpg_pid() is None for node in cluster.nodes.values())
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(150)
def test_kill_node_and_stop_end_the_fence_too() -> None:
    base = scratch_dir("raftpg-test_launcher-")
    cluster = FaultCluster(base_dir=base, ttl=5, loop_wait=1, retry_timeout=2)
    cluster.start()
    try:
        first = cluster.wait_healthy(60)
        fence = wait_for(cluster.nodes[first].fence_pid, 20, "the primary's fence")
        assert ("fence", fence) in {(label.rsplit("-", 1)[1], pid) for label, pid in cluster.pids()}
        cluster.kill_node(first)
        assert not process_alive(fence)

        second = cluster.wait_primary(60, exclude=first)
        leftover = wait_for(cluster.nodes[second].fence_pid, 20, "the new primary's fence")
        cluster.kill_raftpg(second)  # its fence outlives it until stop()
        assert process_alive(leftover)
    finally:
        cluster.stop()
    assert not process_alive(leftover)
    assert list(cluster.pids()) == []
    shutil.rmtree(base, ignore_errors=True)
