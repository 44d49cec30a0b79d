"""Tick-thread CPU per Raft commit under the commit load of an idle raftpg cluster (issue 10).

    python3 -m benchmarks.raft_commit_cpu [--ttl 5] [--loop-wait 1] [--members 3] [--seconds 30]
        [--profile DIR] [--json benchmarks/results/raft-commit-cpu-<label>.json]

An idle cluster still commits: the lease holder renews every loop_wait and every member republishes
its unchanged record when it is heartbeat old (ha/publishing.py), about every 2 s at ttl 5 /
loop_wait 1. This starts the Raft replicas in one process (as benchmarks.raft_idle_cpu does), takes
the Raft leader as the lease holder (leadership.py keeps them together), and measures each
replica's tick-thread CPU (/proc/self/task/TID/schedstat, nanoseconds) for --seconds at rest, then
for --seconds with that load: the renewal proposed on the leader every loop_wait, each member's
record (the shape ha/records.py publishes) proposed on its own replica every heartbeat. The
difference over the commits made is what one commit costs each replica. The event loop's CPU is
given too: it runs the proposals, the replies bridged from the tick thread, and the reads of the
daemon: on every change a snapshot (cli/daemon.py decides from it whether to wake the HA loop),
and SNAPSHOTS_PER_CYCLE snapshots every loop_wait on each replica (the HA loop's cycle reads it
about that often: ha/loop.py, ha/lease.py).

With --profile DIR the loaded phase runs once more with cProfile enabled around every tick of each
tick thread, and DIR/leader.pstats and DIR/follower.pstats are written (cProfile's own overhead
inflates those figures: compare shares, not totals, with the unprofiled run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import math
import pstats
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.raft_idle_cpu import leader_of, loopback_replicas, summary, tick_thread_id, write_result
from raftpg import __version__
from raftpg.config.witness import POSTGRES_KIND
from raftpg.consensus import RaftNode, validate_timings
from raftpg.consensus.options import raft_timings

LEASE_HOLDER = "node0"
SNAPSHOTS_PER_CYCLE = 8


@dataclass(frozen=True)
class Phase:
    """One measured window: CPU in % of a core, per replica (leader first) and of the event loop."""

    seconds: float
    commits: int
    leader_tick_cpu_percent: float
    follower_tick_cpu_percent: list[float]
    event_loop_cpu_percent: float


@dataclass(frozen=True)
class Figures:
    ttl: float
    loop_wait: float
    heartbeat_s: float
    members: int
    timings: dict[str, float]
    idle: Phase
    loaded: Phase
    commits_per_s: float
    leader_ms_per_commit: float
    follower_ms_per_commit: list[float]
    event_loop_ms_per_commit: float
    renew_ms: dict[str, float]


def thread_cpu_ns(tid: int) -> int:
    """Nanoseconds the thread ran (user and system), finer than the stat file's clock ticks."""
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def heartbeat_period(ttl: float, loop_wait: float) -> float:
    """How often an unchanged record is committed: ha/publishing.py's heartbeat age, checked once
    per cycle, so the first cycle at or past it."""
    age = max(0.0, ttl / 2 - loop_wait)
    return max(loop_wait, math.ceil(age / loop_wait - 1e-9) * loop_wait)


def member_record(name: str, index: int, raft_addr: str, primary: bool) -> dict[str, Any]:
    """A record shaped like ha/records.member_record's, on a healthy idle cluster."""
    lsn = 0x5000060
    return {
        "kind": POSTGRES_KIND,
        "instance_id": uuid.uuid4().hex,
        "raft_addr": raft_addr,
        "api_url": f"https://10.0.0.{index + 1}:8008",
        "host": f"10.0.0.{index + 1}",
        "port": 5432,
        "role": "primary" if primary else "replica",
        "state": "running",
        "timeline": 1,
        "lsn": lsn,
        "receive_lsn": None if primary else lsn,
        "replay_lsn": None if primary else lsn,
        "upstream": None if primary else LEASE_HOLDER,
        "tags": {"nofailover": False, "failover_priority": 1, "noloadbalance": False, "clonefrom": False,
                 "nosync": False},
        "version": __version__,
        "pending_restart": False,
        "needs_reinit": None,
        "server_version": 150010,
        "updated": time.time(),
    }


async def _every(period: float, offset: float, action: Callable[[], Any], stopping: asyncio.Event) -> None:
    """Run action at offset, offset + period, ... (a fixed schedule: a slow one does not drift it)
    until stopping is set. Not only cancelled: Python 3.11's asyncio.wait_for (in every RaftNode
    command) can swallow a cancellation that comes as the command completes."""
    loop = asyncio.get_running_loop()
    start = loop.time() + offset
    tick = 0
    while not stopping.is_set():
        await asyncio.sleep(max(0.0, start + tick * period - loop.time()))
        if not stopping.is_set():
            await action()
        tick += 1


@contextlib.asynccontextmanager
async def _load(leader: RaftNode, nodes: Sequence[RaftNode], ttl: float, loop_wait: float, instance: str,
          version: int, renewals: list[float]) -> AsyncIterator[None]:
    """The idle cluster's commits, as background tasks for the duration of the block."""
    heartbeat = heartbeat_period(ttl, loop_wait)

    async def renew() -> None:
        started = time.perf_counter()
        if not await leader.renew_lease(LEASE_HOLDER, instance, version, ttl, timeout=loop_wait):
            raise RuntimeError("renewal refused")
        renewals.append((time.perf_counter() - started) * 1000)

    def publisher(index: int, node: RaftNode) -> Callable[[], Any]:
        name = LEASE_HOLDER if node is leader else f"node{index + 1}"
        addr = node.raft_status().self_addr

        async def publish() -> None:
            await node.publish_member(name, member_record(name, index, addr, node is leader), timeout=loop_wait)

        return publish

    async def cycle() -> None:
        for node in nodes:
            for _ in range(SNAPSHOTS_PER_CYCLE):
                node.snapshot()

    stopping = asyncio.Event()
    tasks = [asyncio.ensure_future(_every(loop_wait, 0.0, renew, stopping)),
             asyncio.ensure_future(_every(loop_wait, loop_wait / 2, cycle, stopping))]
    tasks += [asyncio.ensure_future(_every(heartbeat, (index + 1) * loop_wait / (len(nodes) + 1),
                                           publisher(index, node), stopping))
              for index, node in enumerate(nodes)]
    try:
        yield
    finally:
        stopping.set()
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                raise RuntimeError("the load failed") from outcome


async def _phase(nodes: Sequence[RaftNode], leader: RaftNode, seconds: float) -> Phase:
    tids = [tick_thread_id(leader), *(tick_thread_id(n) for n in nodes if n is not leader)]
    main = threading.get_native_id()
    before = [thread_cpu_ns(tid) for tid in [*tids, main]]
    applied = leader.raft_status().last_applied
    began = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - began
    used = [thread_cpu_ns(tid) - start for tid, start in zip([*tids, main], before, strict=True)]
    if (await leader_of(nodes)) is not leader:
        raise RuntimeError("the Raft leader changed during the measurement")
    percent = [round(100 * ns / 1e9 / elapsed, 3) for ns in used]
    return Phase(round(elapsed, 3), leader.raft_status().last_applied - applied, percent[0], percent[1:-1],
                 percent[-1])


def _per_commit_ms(idle: float, loaded: float, phase: Phase) -> float:
    """ms of CPU one commit costs: the extra % of a core over the commit rate."""
    return round(10 * (loaded - idle) * phase.seconds / max(1, phase.commits), 3)


@contextlib.contextmanager
def _profiled(leader: RaftNode, nodes: Sequence[RaftNode], out: Path) -> Iterator[None]:
    """cProfile each tick thread's ticks (cProfile profiles the thread that enables it)."""
    profiles: dict[str, cProfile.Profile] = {}
    originals: list[tuple[Any, Any]] = []
    follower = next(n for n in nodes if n is not leader)
    for role, node in (("leader", leader), ("follower", follower)):
        obj = node._syncobj
        profile = profiles[role] = cProfile.Profile()
        inner = obj._onTick

        def tick(time_to_wait: float = 0.0, inner: Any = inner, profile: cProfile.Profile = profile) -> None:
            profile.enable()
            try:
                inner(time_to_wait)
            finally:
                profile.disable()

        originals.append((obj, inner))
        obj._onTick = tick
    try:
        yield
    finally:
        for obj, _ in originals:
            del obj._onTick
        out.mkdir(parents=True, exist_ok=True)
        for role, profile in profiles.items():
            profile.dump_stats(out / f"{role}.pstats")
            print(f"--- {role} tick thread, by own time ---")
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
            print(f"--- {role} tick thread, by cumulative time ---")
            pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


async def measure(ttl: float, loop_wait: float, members: int, seconds: float, profile: Path | None) -> Figures:
    timings = raft_timings(ttl)
    started: list[RaftNode] = []

    def on_change(index: int) -> Callable[[], None]:
        def read() -> None:  # the daemon's on_change: a snapshot, to decide whether to wake the HA loop
            if started:
                started[index].snapshot()
        return read

    async with loopback_replicas(members, timings, on_change=on_change) as nodes:
        started.extend(nodes)
        await asyncio.sleep(1.0)
        leader = await leader_of(nodes)
        lease = leader.snapshot().lease
        instance = uuid.uuid4().hex
        if not await leader.acquire_lease(LEASE_HOLDER, instance, lease.version, lease.revision, ttl, timeout=5):
            raise RuntimeError("could not acquire the lease")
        version = leader.snapshot().lease.version
        idle = await _phase(nodes, leader, seconds)
        renewals: list[float] = []
        async with _load(leader, nodes, ttl, loop_wait, instance, version, renewals):
            await asyncio.sleep(2 * heartbeat_period(ttl, loop_wait))  # every publisher has started
            loaded = await _phase(nodes, leader, seconds)
            if profile is not None:
                with _profiled(leader, nodes, profile):
                    await asyncio.sleep(seconds)
    return Figures(
        ttl, loop_wait, heartbeat_period(ttl, loop_wait), members, dict(validate_timings(timings)), idle, loaded,
        round(loaded.commits / loaded.seconds, 3),
        _per_commit_ms(idle.leader_tick_cpu_percent, loaded.leader_tick_cpu_percent, loaded),
        [_per_commit_ms(i, x, loaded) for i, x in zip(idle.follower_tick_cpu_percent,
                                                       loaded.follower_tick_cpu_percent, strict=True)],
        _per_commit_ms(idle.event_loop_cpu_percent, loaded.event_loop_cpu_percent, loaded),
        summary(renewals),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--loop-wait", type=float, default=1.0)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--profile", type=Path, help="also profile the loaded phase; pstats files go here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    f = asyncio.run(measure(args.ttl, args.loop_wait, args.members, args.seconds, args.profile))
    print(f"{f.members} replicas, ttl {f.ttl:g}, loop_wait {f.loop_wait:g}, records every {f.heartbeat_s:g} s: "
          f"{f.timings}")
    for label, phase in (("at rest", f.idle), ("loaded", f.loaded)):
        print(f"{label} {phase.seconds:g} s, {phase.commits} commits: tick thread CPU % of a core: leader "
              f"{phase.leader_tick_cpu_percent:.2f}, followers "
              f"{', '.join(f'{x:.2f}' for x in phase.follower_tick_cpu_percent)}; "
              f"event loop {phase.event_loop_cpu_percent:.2f}")
    print(f"{f.commits_per_s:g} commits/s; CPU ms per commit: leader {f.leader_ms_per_commit}, followers "
          f"{f.follower_ms_per_commit}, event loop {f.event_loop_ms_per_commit}")
    print(f"renewal ms on the leader under load: {f.renew_ms}")
    if args.json:
        write_result(args.json, f)


if __name__ == "__main__":
    main()
