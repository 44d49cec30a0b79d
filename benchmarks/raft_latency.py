"""Commit latency of lease renewals on a 3-replica loopback cluster.

    python benchmarks/raft_latency.py [--renewals 200]

Prints median / p90 / p99 / max of sequential renewals proposed on the Raft leader and on a
follower (which forwards to the leader and waits until it applied the entry itself).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from raftpg.consensus import RaftNode, Snapshot
from raftpg.devcluster import free_ports

TIMINGS = {  # the ttl=3 timings the Raft tests use
    "raftMinTimeout": 0.25,
    "raftMaxTimeout": 0.5,
    "appendEntriesPeriod": 0.05,
    "connectionTimeout": 0.5,
    "connectionRetryTime": 0.3,
    "leaderFallbackTimeout": 1.0,
}




def replicated_part(snap: Snapshot) -> str:
    """The snapshot without this replica's local times and log position."""
    facts = dataclasses.asdict(snap)
    for key in ("member_applied_at", "last_applied"):
        facts.pop(key)
    facts["lease"].pop("applied_at")
    return json.dumps(facts, sort_keys=True)


def quantile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def measure(node: RaftNode, name: str, renewals: int) -> list[float]:
    instance = f"bench-{name}"
    lease = node.snapshot().lease
    assert await node.acquire_lease(name, instance, lease.version, lease.revision, 3.0, timeout=5)
    version = node.snapshot().lease.version
    samples = []
    for _ in range(renewals):
        started = time.perf_counter()
        assert await node.renew_lease(name, instance, version, 3.0, timeout=5)
        samples.append((time.perf_counter() - started) * 1000)
    assert await node.release_lease(name, instance, version, timeout=5)
    await node.barrier(timeout=5)
    return sorted(samples)


async def main(renewals: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        addrs = [f"127.0.0.1:{port}" for port in free_ports(3)]
        nodes = [
            RaftNode(scope="bench", self_addr=addr, partner_addrs=addrs, data_dir=Path(tmp) / str(i),
                     password="benchmark password", timings=TIMINGS)
            for i, addr in enumerate(addrs)
        ]
        try:
            for node in nodes:
                await node.start()
            for node in nodes:
                await node.barrier(timeout=10)
            leader = next(n for n in nodes if n.raft_status().is_leader)
            follower = next(n for n in nodes if n is not leader)
            print(f"{renewals} sequential renewals, 3 replicas on loopback (ms)")
            print(f"{'proposer':<10}{'median':>8}{'p90':>8}{'p99':>8}{'max':>8}")
            for label, node in (("leader", leader), ("follower", follower)):
                ms = await measure(node, label, renewals)
                print(f"{label:<10}{statistics.median(ms):>8.2f}{quantile(ms, 0.9):>8.2f}"
                      f"{quantile(ms, 0.99):>8.2f}{ms[-1]:>8.2f}")
            for node in nodes:
                await node.barrier(timeout=5)
            states = {replicated_part(node.snapshot()) for node in nodes}
            print("replicas identical after the run:", "yes" if len(states) == 1 else f"NO: {states}")
        finally:
            for node in nodes:
                await node.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renewals", type=int, default=200)
    asyncio.run(main(parser.parse_args().renewals))
