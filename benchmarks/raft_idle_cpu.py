"""Idle CPU of Raft replicas per thread, commit latency and election time (issue 10).

    python3 -m benchmarks.raft_idle_cpu [--ttl 5] [--members 3] [--seconds 30] [--rounds 5]
        [--json benchmarks/results/raft-idle-cpu-<label>.json]

Starts the replicas in this one process, each with its own pysyncobj tick thread and the timings
raftpg derives from the ttl (consensus.options.raft_timings), on loopback, with no PostgreSQL and
no HA loop: what is left is the Raft replica's own cost. Prints each replica's tick thread CPU
(from /proc/self/task/TID/stat, % of one core) idle for --seconds, the latency of sequential lease
renewals proposed on the leader and on a follower, and the time from freezing the Raft leader's
tick thread (a paused or hung process: its connections stay open, nothing answers) until another
replica has committed an entry as the new leader. To measure another revision the same way, copy
this file and tests/raft/conftest.py into its checkout and run it there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raftpg.consensus import NoQuorum, RaftNode, validate_timings
from raftpg.consensus.options import raft_timings
from raftpg.devcluster import free_ports
from tests.raft.conftest import freeze

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Figures:
    ttl: float
    members: int
    seconds: float
    timings: dict[str, float]
    leader_tick_cpu_percent: float
    follower_tick_cpu_percent: list[float]
    event_loop_cpu_percent: float
    renew_ms_leader: dict[str, float]
    renew_ms_follower: dict[str, float]
    election_s: list[float]


def thread_ticks(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/stat") as f:
        text = f.read()
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def tick_thread_id(node: RaftNode) -> int:
    return int(node._syncobj._SyncObj__thread.native_id)


def summary(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered), 2),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "max": round(ordered[-1], 2),
    }


async def leader_of(nodes: Sequence[RaftNode], timeout: float = 10.0) -> RaftNode:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [n for n in nodes if n.raft_status().is_leader]
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.02)
    raise RuntimeError("no single Raft leader")


async def _idle_cpu(nodes: Sequence[RaftNode], seconds: float) -> tuple[float, list[float], float]:
    leader = await leader_of(nodes)
    tids = {node: tick_thread_id(node) for node in nodes}
    main = threading.get_native_id()
    start = {node: thread_ticks(tid) for node, tid in tids.items()}
    main_start = thread_ticks(main)
    began = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - began
    if (await leader_of(nodes)) is not leader:
        raise RuntimeError("the Raft leader changed while idle")

    def percent(ticks: int) -> float:
        return round(100 * ticks / _TICKS / elapsed, 3)

    usage = {node: percent(thread_ticks(tid) - start[node]) for node, tid in tids.items()}
    followers = [usage[node] for node in nodes if node is not leader]
    return usage[leader], followers, percent(thread_ticks(main) - main_start)


async def _renewals(node: RaftNode, name: str, count: int, ttl: float) -> list[float]:
    instance = f"bench-{name}"
    await node.barrier(timeout=5)  # this replica has applied the previous release
    lease = node.snapshot().lease
    if not await node.acquire_lease(name, instance, lease.version, lease.revision, ttl, timeout=5):
        raise RuntimeError("could not acquire the lease")
    version = node.snapshot().lease.version
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        if not await node.renew_lease(name, instance, version, ttl, timeout=5):
            raise RuntimeError("renewal refused")
        samples.append((time.perf_counter() - started) * 1000)
    await node.release_lease(name, instance, version, timeout=5)
    return samples


async def _election(nodes: Sequence[RaftNode]) -> float:
    """Freeze the leader's tick thread; seconds from when it stopped until another replica
    committed as leader."""
    leader = await leader_of(nodes)
    frozen, thaw = freeze(leader)
    try:
        others = [n for n in nodes if n is not leader]
        began = time.monotonic()
        while True:
            new = [n for n in others if n.raft_status().is_leader]
            if new and frozen.frozen_at is not None:
                try:
                    await new[0].barrier(timeout=2)
                except NoQuorum:
                    continue
                return time.monotonic() - frozen.frozen_at
            if time.monotonic() - began > 30:
                raise RuntimeError("no new leader within 30 s")
            await asyncio.sleep(0.005)
    finally:
        thaw()
        await leader_of(nodes)


@contextlib.asynccontextmanager
async def loopback_replicas(count: int, timings: dict[str, float],
                            on_change: Callable[[int], Callable[[], None]] | None = None,
                            ) -> AsyncIterator[list[RaftNode]]:
    """`count` replicas of one Raft cluster on loopback, started and with a leader; stopped after.
    on_change(index) gives replica index's on_change callback."""
    with tempfile.TemporaryDirectory(prefix="raftpg-idle-cpu-") as tmp:
        addrs = [f"127.0.0.1:{port}" for port in free_ports(count)]
        nodes = [RaftNode(scope="bench", self_addr=addr, partner_addrs=addrs, data_dir=Path(tmp) / f"r{index}",
                          password="benchmark password", timings=timings,
                          on_change=on_change(index) if on_change else None) for index, addr in enumerate(addrs)]
        try:
            for node in nodes:
                await node.start()
            await asyncio.gather(*(node.barrier(timeout=10) for node in nodes))
            yield nodes
        finally:
            for node in nodes:
                await node.stop()


async def measure(ttl: float, members: int, seconds: float, rounds: int, renewals: int) -> Figures:
    timings = raft_timings(ttl)
    async with loopback_replicas(members, timings) as nodes:
        await asyncio.sleep(1.0)
        leader_cpu, follower_cpu, loop_cpu = await _idle_cpu(nodes, seconds)
        leader = await leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        on_leader = await _renewals(leader, "on-leader", renewals, ttl)
        on_follower = await _renewals(follower, "on-follower", renewals, ttl)
        elections = [round(await _election(nodes), 3) for _ in range(rounds)]
    # As the replicas ran them: validate_timings adds the idle tick where the code has one.
    return Figures(ttl, members, seconds, dict(validate_timings(timings)), leader_cpu, follower_cpu, loop_cpu,
                   summary(on_leader), summary(on_follower), elections)


def write_result(path: Path, figures: Any) -> None:
    """The figures (a dataclass) as JSON, dated."""
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), **asdict(figures)}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=5, help="leader freezes measured")
    parser.add_argument("--renewals", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.ttl, args.members, args.seconds, args.rounds, args.renewals))
    print(f"{args.members} replicas, ttl {args.ttl:g}: {figures.timings}")
    print(f"idle {args.seconds:g} s, tick thread CPU % of a core: leader {figures.leader_tick_cpu_percent:.2f}, "
          f"followers {', '.join(f'{x:.2f}' for x in figures.follower_tick_cpu_percent)}; "
          f"event loop {figures.event_loop_cpu_percent:.2f}")
    print(f"renewal ms on the leader {figures.renew_ms_leader}, on a follower {figures.renew_ms_follower}")
    print(f"leader frozen -> new leader committed, s: {figures.election_s} "
          f"(median {statistics.median(figures.election_s):.3f})")
    if args.json:
        write_result(args.json, figures)


if __name__ == "__main__":
    main()
