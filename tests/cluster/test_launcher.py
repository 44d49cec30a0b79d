"""The local-cluster launcher that tests, the demo and the benchmarks stand on."""

from __future__ import annotations

import shutil

import pytest

from raftpg.cli.launcher import LocalCluster
from tests.cluster.conftest import scratch_dir

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(60)]


def test_a_node_that_cannot_start_fails_the_wait_at_once_with_its_log() -> None:
    base = scratch_dir("raftpg-test_launcher-")
    cluster = LocalCluster(base_dir=base, ttl=3, loop_wait=1, retry_timeout=2)  # 1 + 2*2 > ttl: refused
    cluster.start()
    try:
        with pytest.raises(RuntimeError, match=r"exited with code 2:(.|\n)*retry_timeout"):
            cluster.wait_healthy(45)
    finally:
        cluster.stop()
    assert all(node.raftpg_pid() is None for node in cluster.nodes.values())
    shutil.rmtree(base, ignore_errors=True)
