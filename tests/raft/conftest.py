"""Real pysyncobj replicas on loopback: helpers to start, stop and restart them."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from raftpg.consensus import RaftNode
from raftpg.devcluster import free_ports
from raftpg.poll import async_wait_until

SCOPE = "raft-test"
PASSWORD = "correct horse battery staple"


def timings_for_tests() -> dict[str, float]:
    """What consensus.options.raft_timings() would give for ttl=3, kept local so these tests stand alone."""
    return {
        "raftMinTimeout": 0.25,
        "raftMaxTimeout": 0.5,
        "appendEntriesPeriod": 0.05,
        "connectionTimeout": 0.5,
        "connectionRetryTime": 0.3,
        "leaderFallbackTimeout": 1.0,
    }


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    if not await async_wait_until(condition, timeout, 0.02):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Cluster:
    """N replicas, each with its own address and data directory, restartable in place."""

    def __init__(self, root: Path, size: int, timings: Mapping[str, float] | None = None) -> None:
        self.root = root
        self.timings = dict(timings or timings_for_tests())
        self.addrs = [f"127.0.0.1:{port}" for port in free_ports(size)]
        self.nodes: list[RaftNode | None] = [None] * size
        self.changes = [0] * size

    def data_dir(self, i: int) -> Path:
        return self.root / f"node{i}"

    def node(self, i: int) -> RaftNode:
        node = self.nodes[i]
        assert node is not None, f"node {i} is not running"
        return node

    def running(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if node is not None]

    async def start(
        self, i: int, *, password: str = PASSWORD, scope: str = SCOPE, partners: list[str] | None = None,
        joining: bool = False,
    ) -> RaftNode:
        def changed() -> None:
            self.changes[i] += 1

        node = RaftNode(
            scope=scope,
            self_addr=self.addrs[i],
            partner_addrs=self.addrs if partners is None else partners,
            data_dir=self.data_dir(i),
            password=password,
            timings=self.timings,
            on_change=changed,
            joining=joining,
        )
        await node.start()
        self.nodes[i] = node
        return node

    async def stop(self, i: int) -> None:
        node = self.nodes[i]
        self.nodes[i] = None
        if node is not None:
            await node.stop()
            assert not node.tick_thread_alive()

    async def stop_all(self) -> None:
        for i in self.running():
            await self.stop(i)

    def leader_index(self) -> int | None:
        for i in self.running():
            if self.node(i).raft_status().is_leader:
                return i
        return None

    async def wait_leader(self, timeout: float = 5.0) -> int:
        await wait_until(lambda: self.leader_index() is not None, timeout, "a Raft leader")
        index = self.leader_index()
        assert index is not None
        return index


class FrozenPoller:
    """Stands in for a replica's poller: its tick thread blocks in poll() until released, as in a
    paused or hung process: its connections stay open, nothing is sent or answered."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.frozen_at: float | None = None  # time.monotonic() when the tick thread stopped

    def subscribe(self, descr: Any, callback: Any, event_mask: int) -> None:
        self.inner.subscribe(descr, callback, event_mask)

    def unsubscribe(self, descr: Any) -> None:
        self.inner.unsubscribe(descr)

    def poll(self, timeout: float) -> None:
        if self.frozen_at is None:
            self.frozen_at = time.monotonic()
        self.release.wait()
        self.inner.poll(0)


def freeze(node: RaftNode) -> tuple[FrozenPoller, Callable[[], None]]:
    """Freeze node's tick thread at its next poll (the tick it is in, heartbeat and all, still
    runs: frozen_at says when it stopped); returns the poller and what thaws it."""
    obj = node._syncobj
    frozen = FrozenPoller(obj._poller)
    obj._poller = frozen

    def thaw() -> None:
        obj._poller = frozen.inner
        frozen.release.set()

    return frozen, thaw


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A started 3-node cluster whose every replica passed the start-up barrier."""
    c = Cluster(tmp_path, 3)
    try:
        for i in range(3):
            await c.start(i)
        for i in range(3):
            await c.node(i).barrier(timeout=10)
        yield c
    finally:
        await c.stop_all()
