"""Member tags and rejoin rules on a real 3-node cluster: replicatefrom, clonefrom, nofailover, and a
data directory from another cluster.

The tags: node2 {clonefrom}, node3 {replicatefrom: node2, nofailover}. nofailover sits on node3 (the
cascading member) on purpose: the cascading setup needs node2 and node3 both replicas, so node1 must
be able to be primary. Which node bootstraps is random, so every test first arranges "node1 primary,
node2 and node3 replicas" with a switchover when needed. The launcher's wait_healthy() expects every
replica to stream from the primary, which cascading breaks; this module has its own settle check.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from raftpg.devcluster import LocalCluster
from raftpg.poll import wait_for
from raftpg.postgres.binaries import discover_bin_dir
from tests.cluster.conftest import make_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

PRIMARY = "node1"
CLONE_SOURCE = "node2"
CASCADING = "node3"
TAGS: dict[str, dict[str, object]] = {
    CLONE_SOURCE: {"clonefrom": True},
    CASCADING: {"replicatefrom": CLONE_SOURCE, "nofailover": True},
}
SETTLE_TIMEOUT = 90.0


# --- cluster -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tagged(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    # Cascading replicas do not all stream from the primary: settle by our own rule, not healthy().
    yield from make_cluster(request, settled=lambda c: wait_settled(c, SETTLE_TIMEOUT),
                            ttl=5, loop_wait=1, retry_timeout=2, tags=TAGS)


@pytest.fixture
def arranged(tagged: LocalCluster) -> LocalCluster:
    """Every node running, node1 primary, node2 streaming from node1 and node3 from node2."""
    for name, node in tagged.nodes.items():
        if node.raftpg_pid() is None:
            tagged.start_node(name)
    primary = wait_settled(tagged, SETTLE_TIMEOUT)
    if primary != PRIMARY:
        status, body = tagged.api_request(primary, "POST", "/switchover",
                                          {"leader": primary, "candidate": PRIMARY})
        assert status == 200, (status, body)
        assert wait_settled(tagged, SETTLE_TIMEOUT) == PRIMARY
    wait_for(lambda: streams_from(tagged, CASCADING) == CLONE_SOURCE, 30,
             f"{CASCADING} to stream from {CLONE_SOURCE}")
    return tagged


def streams_from(cluster: LocalCluster, name: str) -> str | None:
    """The member `name` streams WAL from, by its own pg_stat_wal_receiver (the sender's
    pg_stat_replication can list a standby that is already gone until wal_sender_timeout)."""
    try:
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            row = conn.execute("SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'").fetchone()
    except psycopg.Error:
        return None
    if row is None:
        return None
    return next((n for n, node in cluster.nodes.items() if node.ports.pg == row[0]), None)


def is_replica(cluster: LocalCluster, name: str) -> bool:
    return cluster.api_get(name, "/replica", timeout=1.0)[0] == 200


def wait_settled(cluster: LocalCluster, timeout: float) -> str:
    """One primary; every running replica healthy and streaming from where its tags say: node3 from
    node2 while node2 is a healthy replica, everyone else from the primary."""
    def probe() -> str | None:
        primary = cluster.primary()
        if primary is None:
            return None
        running = [n for n, node in cluster.nodes.items() if node.raftpg_pid() is not None and n != primary]
        if not all(is_replica(cluster, name) for name in running):
            return None
        for name in running:
            source = CLONE_SOURCE if name == CASCADING and CLONE_SOURCE in running else primary
            if streams_from(cluster, name) != source:
                return None
        return primary

    return wait_for(probe, timeout, "a primary with every running member streaming from its upstream",
                    interval=0.3)


def last_decision(cluster: LocalCluster, name: str) -> str:
    status, body = cluster.api_get(name, "/patroni")
    if status != 200 or not isinstance(body, dict):
        return ""
    return str(body["raftpg"]["last_decision"])


def upstream(cluster: LocalCluster, name: str) -> str | None:
    status, body = cluster.api_get(name, "/patroni")
    return body["raftpg"]["upstream"] if status == 200 and isinstance(body, dict) else None


def log_since(cluster: LocalCluster, name: str, offset: int) -> str:
    with cluster.nodes[name].log_path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def log_size(cluster: LocalCluster, name: str) -> int:
    path = cluster.nodes[name].log_path
    return path.stat().st_size if path.exists() else 0


def children_of(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def holds_for(condition: Callable[[], bool], seconds: float) -> None:
    """Assert a condition stays true for a while (checked every 0.2 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition()
        time.sleep(0.2)


def tree_fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and mtime: any write, create or delete changes it."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


def moved_aside(data_dir: Path) -> list[Path]:
    return sorted(data_dir.parent.glob(f"{data_dir.name}.*.moved"))


# --- tests ---------------------------------------------------------------------------------------
def test_replicatefrom_cascades_and_falls_back_to_the_primary(arranged: LocalCluster) -> None:
    cluster = arranged
    assert streams_from(cluster, CASCADING) == CLONE_SOURCE
    wait_for(lambda: upstream(cluster, CASCADING) == CLONE_SOURCE, 5,
             f"{CASCADING} to report {CLONE_SOURCE} as its upstream")

    cluster.kill_node(CLONE_SOURCE)
    wait_for(lambda: streams_from(cluster, CASCADING) == PRIMARY, cluster.ttl + 10,
             f"{CASCADING} to stream from the primary once {CLONE_SOURCE} is gone")
    assert cluster.primary() == PRIMARY

    cluster.start_node(CLONE_SOURCE)
    wait_for(lambda: streams_from(cluster, CASCADING) == CLONE_SOURCE, 60,
             f"{CASCADING} to cascade from {CLONE_SOURCE} again")
    assert streams_from(cluster, CLONE_SOURCE) == PRIMARY
    assert wait_settled(cluster, 30) == PRIMARY


def test_new_replica_is_cloned_from_the_clonefrom_member(arranged: LocalCluster) -> None:
    cluster = arranged
    node = cluster.nodes[CASCADING]
    cluster.stop_node(CASCADING)
    assert node.postmaster_pid() is None
    old = node.data_dir.with_name("pgdata.before-clone")
    shutil.move(node.data_dir, old)
    offset = log_size(cluster, CASCADING)
    try:
        cluster.start_node(CASCADING)
        wait_for(lambda: streams_from(cluster, CASCADING) == CLONE_SOURCE, 90,
                 f"the re-cloned {CASCADING} to stream")
        log = log_since(cluster, CASCADING, offset)
        assert f"Clone: no data directory: cloning from {CLONE_SOURCE}" in log, log[-3000:]
        source = cluster.nodes[CLONE_SOURCE]
        assert f"from {source.host}:{source.ports.pg}" in log, log[-3000:]
        assert wait_settled(cluster, 30) == PRIMARY
    finally:
        shutil.rmtree(old, ignore_errors=True)


def test_member_of_another_cluster_refuses_to_join_and_touches_nothing(arranged: LocalCluster) -> None:
    cluster = arranged
    node = cluster.nodes[CASCADING]
    bin_dir = discover_bin_dir()
    assert bin_dir is not None
    cluster.stop_node(CASCADING)
    original = node.data_dir.with_name("pgdata.original")
    shutil.move(node.data_dir, original)
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(node.data_dir), "-A", "trust", "--no-sync"],
                       check=True, capture_output=True, timeout=60, user=cluster.os_user, group=cluster.os_user)
        (node.data_dir / "FOREIGN_MARKER").write_text("another cluster's data\n")
        before = tree_fingerprint(node.data_dir)

        cluster.start_node(CASCADING)
        def refusal() -> str | None:
            decision = last_decision(cluster, CASCADING)
            return decision if "refusing to join" in decision else None

        decision = wait_for(refusal, 30, f"{CASCADING} to refuse the foreign data directory")
        assert "system identifier" in decision, decision
        # A few more cycles: still refusing, and still nothing started, moved or written.
        holds_for(lambda: "refusing to join" in last_decision(cluster, CASCADING)
                  and node.postmaster_pid() is None, cluster.loop_wait * 3)
        assert tree_fingerprint(node.data_dir) == before
        assert (node.data_dir / "PG_VERSION").exists() and (node.data_dir / "FOREIGN_MARKER").exists()
        assert moved_aside(node.data_dir) == []
        assert cluster.primary() == PRIMARY
    finally:
        cluster.stop_node(CASCADING)
        if original.exists():
            shutil.rmtree(node.data_dir, ignore_errors=True)
            shutil.move(original, node.data_dir)
    cluster.start_node(CASCADING)
    wait_for(lambda: streams_from(cluster, CASCADING) == CLONE_SOURCE, 60,
             f"{CASCADING} with its own data directory back to stream")


def test_nofailover_member_is_never_promoted(arranged: LocalCluster) -> None:
    cluster = arranged
    status, body = cluster.api_request(PRIMARY, "POST", "/switchover", {"leader": PRIMARY, "candidate": CASCADING})
    assert status == 412 and "nofailover" in str(body), (status, body)
    assert cluster.primary() == PRIMARY

    # Freeze node2's PostgreSQL (postmaster and every child: backends run in their own process
    # groups): its HA loop cannot read its WAL position, so it sits the race out, while its raftpg
    # keeps Raft's quorum. node3 is then the only member that could take the free lease.
    postmaster = cluster.nodes[CLONE_SOURCE].postmaster_pid()
    assert postmaster is not None
    frozen = [postmaster, *children_of(postmaster)]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        cluster.kill_node(PRIMARY)
        wait_for(lambda: "nofailover tag is set" in last_decision(cluster, CASCADING), cluster.ttl + 10,
                 f"{CASCADING} to see the free lease and decline it")
        holds_for(lambda: "nofailover tag is set" in last_decision(cluster, CASCADING)
                  and not cluster.primaries(), 3.0)
        status, body = cluster.api_get(CASCADING, "/patroni")
        assert status == 200 and body["role"] == "replica", body
    finally:
        for pid in reversed(frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert cluster.wait_primary(cluster.ttl + 20) == CLONE_SOURCE
    cluster.start_node(PRIMARY)
    assert wait_settled(cluster, SETTLE_TIMEOUT) == CLONE_SOURCE
