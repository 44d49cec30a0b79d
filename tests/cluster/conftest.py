"""One real cluster (raftpg + PostgreSQL 15 + Raft, on loopback) per test module, reset between tests."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from raftpg.postgres.binaries import discover_bin_dir
from tests.cluster.faults import FaultCluster

HEALTHY_TIMEOUT = 90.0


def scratch_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if discover_bin_dir() is None:
        skip = pytest.mark.skip(reason="PostgreSQL server binaries not found")
        for item in items:
            if "cluster" in item.keywords:
                item.add_marker(skip)


def make_cluster(request: pytest.FixtureRequest, settled: Callable[[FaultCluster], object] | None = None,
                 **kwargs: object) -> Iterator[FaultCluster]:
    """Start a cluster for a module, wait until `settled` (default: healthy), stop it by PID after."""
    base = scratch_dir(f"raftpg-{request.module.__name__.rsplit('.', 1)[-1]}-")
    cluster = FaultCluster(base_dir=base, **kwargs)  # type: ignore[arg-type]
    cluster.start()
    settled_ok = False
    try:
        if settled is None:
            cluster.wait_healthy(HEALTHY_TIMEOUT)
        else:
            settled(cluster)
        settled_ok = True
        yield cluster
    finally:
        cluster.stop()
        if request.session.testsfailed or not settled_ok:
            print(f"\ncluster logs kept in {base}")
            for node in cluster.nodes.values():
                if node.log_path.exists():
                    tail = node.log_path.read_text(errors="replace").splitlines()[-60:]
                    print(f"--- {node.name} ---\n" + "\n".join(tail))
        else:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[FaultCluster]:
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2)


@pytest.fixture
def healthy(cluster: FaultCluster) -> FaultCluster:
    """Every node running, one primary, all replicas streaming: the start state of each test."""
    for name, node in cluster.nodes.items():
        if node.raftpg_pid() is None:
            cluster.start_node(name)
    cluster.wait_healthy(HEALTHY_TIMEOUT)
    return cluster
