"""Random faults on a local 3-node cluster, with the safety checker's writer and probers running throughout.

By default the next fault does not wait for recovery: it comes a random 0..ttl seconds after the
previous fault's node is back (its processes running again, its network healed), while the cluster
may still be failing over, rewinding or re-cloning; at most one member is faulty at a time (power
loss excepted, which takes all three at once). `--wait-recovery` restores the old pacing: every
fault starts from one primary with all members streaming.

Fault kinds (`--faults-kinds`, comma-separated; default all that this machine can inject):
  kill_primary_node              kill -9 of the primary's raftpg, fence and PostgreSQL; restart 0..2*ttl later
  kill_primary_postmaster        kill -9 of the primary's postmaster only
  sigstop_primary_raftpg         SIGSTOP of the primary's raftpg for 1.5..3 ttl, then SIGCONT
  partition_primary              the primary cut off the network for 1.5..3 ttl (--netns)
  kill_replica_during_switchover kill -9 of a replica while a switchover is in flight
  kill_postmaster_then_node      postmaster crash, then kill -9 of the same node 0..3 s after a write
                                 is acknowledged again; restart 0..ttl later
  sigstop_primary_postgres       SIGSTOP of the primary's postmaster and children (not raftpg) for
                                 1.5..3 ttl, then SIGCONT
  power_loss                     kill -9 of every process of all nodes at once, then start all; checks
                                 the system identifier and records the time to a writable primary
  partition_primary_raft         the primary's Raft port dropped (nftables, --netns), PostgreSQL reachable
  partition_primary_replication  the primary's PostgreSQL dropped between members, Raft reachable
  kill_during_rewind             kill -9 of the primary, then of the same node again while its rejoin
                                 runs pg_rewind
  kill_during_basebackup         kill -9 of the primary, its data directory lost, kill -9 again while
                                 it re-clones with pg_basebackup
  raft_disk_full                 the primary's Raft directory (a 320 MB tmpfs) filled for 1.5..3 ttl

Per fault: recovery (injection to one primary with every member streaming and a write acknowledged
after that; "interrupted" when the next fault came first) and the longest gap between acknowledged
writes until the next fault. At the end: acknowledged writes lost and overlapping probes (two nodes
acknowledging writes at once). Commits that PostgreSQL reported with a cancelled synchronous wait
are counted apart ("unreplicated": never acknowledged as replicated) and reported, lost or not.
With synchronous_mode off a loss is reported; with on or quorum any loss, overlap or changed system
identifier exits 1. Not recovering within --recovery-timeout exits 2.

Usage (from the repository root, as root):
  python3 -m benchmarks.chaos --faults 8 --synchronous-mode off --seed 1
  python3 -m benchmarks.chaos --faults 200 --synchronous-mode quorum --ttl 5 --netns --json result.json
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import logging
import os
import pwd
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from raftpg.cli.launcher import LocalCluster, wait_for
from tests.cluster import faults
from tests.cluster.safety import Prober, SafetyChecker, missing_unreplicated, missing_writes

logger = logging.getLogger("chaos")

KILL_NODE = "kill_primary_node"
KILL_POSTMASTER = "kill_primary_postmaster"
SIGSTOP = "sigstop_primary_raftpg"
PARTITION = "partition_primary"
SWITCHOVER_KILL = "kill_replica_during_switchover"
POSTMASTER_THEN_NODE = "kill_postmaster_then_node"
SIGSTOP_POSTGRES = "sigstop_primary_postgres"
POWER_LOSS = "power_loss"
RAFT_PARTITION = "partition_primary_raft"
REPLICATION_PARTITION = "partition_primary_replication"
KILL_DURING_REWIND = "kill_during_rewind"
KILL_DURING_BASEBACKUP = "kill_during_basebackup"
RAFT_DISK_FULL = "raft_disk_full"
KINDS = (KILL_NODE, KILL_POSTMASTER, SIGSTOP, PARTITION, SWITCHOVER_KILL, POSTMASTER_THEN_NODE, SIGSTOP_POSTGRES,
         POWER_LOSS, RAFT_PARTITION, REPLICATION_PARTITION, KILL_DURING_REWIND, KILL_DURING_BASEBACKUP,
         RAFT_DISK_FULL)
NETNS_KINDS = (PARTITION, RAFT_PARTITION, REPLICATION_PARTITION)
NFT_KINDS = (RAFT_PARTITION, REPLICATION_PARTITION)
STARTUP_TIMEOUT = 120.0
HEALTH_INTERVAL = 0.2
PROGRAM_POLL = 0.005


class NotRecovered(Exception):
    """The cluster did not get back to a writable primary / every member streaming in time."""


@dataclass(frozen=True)
class Injected:
    """What a fault did, and when its node was back (monotonic)."""

    detail: str
    back: float
    writable_s: float | None = None  # power loss: start of all nodes to the first acknowledged write
    identifier_changed: bool = False


@dataclass(frozen=True)
class FaultResult:
    kind: str
    detail: str
    primary_before: str
    primary_after: str | None
    started_s: float  # since the run began
    recovery_s: float | None  # None: the next fault came before the cluster recovered
    write_gap_s: float
    write_gap_from_s: float  # when the longest gap began, after injection
    writable_s: float | None
    identifier_changed: bool


@dataclass(frozen=True)
class KindStats:
    count: int
    recovered: int
    recovery_median_s: float | None
    recovery_max_s: float | None
    write_gap_median_s: float
    write_gap_max_s: float


@dataclass(frozen=True)
class Summary:
    synchronous_mode: str
    ttl: float
    seed: int
    overlapping: bool
    faults: list[FaultResult]
    writes_acknowledged: int
    writes_lost: int | None  # None: the cluster could not be read at the end
    lost_ids: list[int]
    writes_unreplicated: int  # success reported with a cancelled synchronous wait
    unreplicated_lost: int | None
    probes_unreplicated: int
    overlaps: int
    overlap_examples: list[str]
    not_recovered: str | None
    by_kind: dict[str, KindStats] = field(default_factory=dict)

    @property
    def identifier_changes(self) -> int:
        return sum(1 for f in self.faults if f.identifier_changed)

    @property
    def failed(self) -> bool:
        if self.writes_lost is None:
            return True
        if self.identifier_changes:
            return True
        return self.synchronous_mode != "off" and (self.writes_lost > 0 or self.overlaps > 0)


def overlaps(probers: Sequence[Prober], examples: int = 5) -> tuple[int, list[str]]:
    """Pairs of acknowledged probes on different nodes whose intervals overlap, by a linear merge per
    pair of nodes (each prober's intervals are sequential, so sorted and disjoint)."""
    count, found = 0, list[str]()
    for a, b in itertools.combinations(probers, 2):
        i = j = 0
        while i < len(a.intervals) and j < len(b.intervals):
            (a_start, a_end), (b_start, b_end) = a.intervals[i], b.intervals[j]
            if a_start < b_end and b_start < a_end:
                count += 1
                if len(found) < examples:
                    found.append(f"ports {a.node_port} and {b.node_port} both acknowledged writes at "
                                 f"{max(a_start, b_start):.3f}")
            if a_end <= b_end:
                i += 1
            else:
                j += 1
    return count, found


def write_gap(ack_times: Sequence[float], start: float, end: float) -> tuple[float, float]:
    """Longest time without an acknowledged write between `start` and `end`, and when (after `start`)
    it began."""
    first = bisect.bisect_left(ack_times, start)
    points = [start, *(t for t in ack_times[first:] if t <= end), end]
    length, began = max((b - a, a) for a, b in itertools.pairwise(points))
    return length, began - start


def kind_stats(results: Sequence[FaultResult]) -> dict[str, KindStats]:
    stats = {}
    for kind in sorted({r.kind for r in results}):
        of_kind = [r for r in results if r.kind == kind]
        recoveries = [r.recovery_s for r in of_kind if r.recovery_s is not None]
        gaps = [r.write_gap_s for r in of_kind]
        stats[kind] = KindStats(
            count=len(of_kind), recovered=len(recoveries),
            recovery_median_s=round(statistics.median(recoveries), 2) if recoveries else None,
            recovery_max_s=max(recoveries) if recoveries else None,
            write_gap_median_s=round(statistics.median(gaps), 2), write_gap_max_s=max(gaps))
    return stats


class HealthMonitor(threading.Thread):
    """Samples, every HEALTH_INTERVAL, whether the cluster has one primary with every running member
    streaming; a fault's recovery is read from these samples afterwards, so that injecting the next
    fault never waits for it."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.samples: list[tuple[float, bool]] = []  # (probe start, healthy)
        self._halt = threading.Event()

    def healthy_now(self) -> bool:
        primary = self.cluster.primary()
        if primary is None:
            return False
        others = {n for n in self.cluster.nodes if n != primary}
        if not all(self.cluster.nodes[n].raftpg_pid() is not None for n in others):
            return False
        if not others <= self.cluster.streaming_replicas(primary):
            return False
        return all(self.cluster.api_get(n, "/replica", timeout=1.0)[0] == 200 for n in others)

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            self.samples.append((started, self.healthy_now()))
            self._halt.wait(HEALTH_INTERVAL)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)

    def first_healthy(self, after: float) -> float | None:
        return next((t for t, ok in list(self.samples) if ok and t >= after), None)

    def last_healthy(self) -> float | None:
        return next((t for t, ok in reversed(list(self.samples)) if ok), None)


class Chaos:
    def __init__(self, cluster: LocalCluster, checker: SafetyChecker, monitor: HealthMonitor, rng: random.Random,
                 recovery_timeout: float, disks: faults.RaftDisks | None) -> None:
        self.cluster = cluster
        self.checker = checker
        self.monitor = monitor
        self.rng = rng
        self.recovery_timeout = recovery_timeout
        self.disks = disks
        self.ttl = cluster.ttl
        self.frozen: list[int] = []
        self.blocked: set[str] = set()
        self.filled: set[str] = set()
        self.lost_disks = 0
        self.faults: dict[str, Callable[[str], Injected]] = {
            KILL_NODE: self.kill_node, KILL_POSTMASTER: self.kill_postmaster, SIGSTOP: self.sigstop,
            PARTITION: self.partition, SWITCHOVER_KILL: self.switchover_kill,
            POSTMASTER_THEN_NODE: self.postmaster_then_node, SIGSTOP_POSTGRES: self.sigstop_postgres,
            POWER_LOSS: self.power_loss, RAFT_PARTITION: self.raft_partition,
            REPLICATION_PARTITION: self.replication_partition, KILL_DURING_REWIND: self.kill_during_rewind,
            KILL_DURING_BASEBACKUP: self.kill_during_basebackup, RAFT_DISK_FULL: self.raft_disk_full,
        }

    # --- waiting -------------------------------------------------------------------------------
    def _wait(self, probe: Callable[[], object], what: str) -> None:
        try:
            wait_for(probe, self.recovery_timeout, what, interval=0.02)
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc

    def healthy(self) -> str:
        try:
            return self.cluster.wait_healthy(self.recovery_timeout)
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc

    def primary(self, exclude: str | None = None) -> str:
        try:
            return self.cluster.wait_primary(self.recovery_timeout, exclude=exclude)
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc

    def acked_after(self, since: float) -> tuple[int, float, int] | None:
        acked = self.checker.writer.acked
        return acked[-1] if acked and acked[-1][1] > since else None

    def writable(self, since: float | None = None) -> tuple[int, float, int]:
        """Wait for the writer's next acknowledgement after `since` (default now)."""
        start = time.monotonic() if since is None else since
        self._wait(lambda: self.acked_after(start), "an acknowledged write")
        found = self.acked_after(start)
        assert found is not None
        return found

    def restart_later(self, name: str, longest: float) -> float:
        delay = self.rng.uniform(0, longest)
        time.sleep(delay)
        self.cluster.start_node(name)
        return delay

    # --- fault kinds: each returns once its node is back -----------------------------------------
    def kill_node(self, primary: str) -> Injected:
        self.cluster.kill_node(primary)
        delay = self.restart_later(primary, 2 * self.ttl)
        return Injected(f"{primary} killed, restarted after {delay:.1f}s", time.monotonic())

    def kill_postmaster(self, primary: str) -> Injected:
        node = self.cluster.nodes[primary]
        old = node.postmaster_pid()
        self.cluster.kill_postmaster(primary)
        # /primary may answer from a state cached just before the kill: wait for the restart itself.
        self._wait(lambda: node.postmaster_pid() not in (None, old), f"a new postmaster on {primary}")
        return Injected(f"{primary}'s postmaster killed", time.monotonic())

    def sigstop(self, primary: str) -> Injected:
        frozen = self.ttl * self.rng.uniform(1.5, 3.0)
        self.cluster.kill_raftpg(primary, signal.SIGSTOP)
        try:
            time.sleep(frozen)
        finally:
            self.cluster.kill_raftpg(primary, signal.SIGCONT)
        return Injected(f"{primary}'s raftpg stopped for {frozen:.1f}s", time.monotonic())

    def partition(self, primary: str) -> Injected:
        cut_for = self.ttl * self.rng.uniform(1.5, 3.0)
        self.cluster.cut(primary)
        try:
            time.sleep(cut_for)
        finally:
            self.cluster.heal(primary)
        return Injected(f"{primary} cut off for {cut_for:.1f}s", time.monotonic())

    def switchover_kill(self, primary: str) -> Injected:
        victim = self.rng.choice([name for name in self.cluster.nodes if name != primary])
        answer: list[tuple[int, object]] = []
        request = threading.Thread(target=lambda: answer.append(self.cluster.api_request(
            primary, "POST", "/switchover", {"leader": primary}, timeout=self.ttl + 20)), daemon=True)
        request.start()
        delay = self.rng.uniform(0.05, 1.0)
        time.sleep(delay)
        self.cluster.kill_node(victim)
        restart = self.restart_later(victim, self.ttl)
        back = time.monotonic()
        request.join(timeout=self.ttl + 25)
        status, body = answer[0] if answer else ("no answer", None)
        message = body.get("message") or body.get("error") if isinstance(body, dict) else body
        return Injected(f"switchover from {primary} (HTTP {status}: {message}); {victim} killed {delay:.2f}s in, "
                        f"restarted {restart:.1f}s later", back)

    def postmaster_then_node(self, primary: str) -> Injected:
        old = self.cluster.nodes[primary].postmaster_pid()
        self.cluster.kill_postmaster(primary)
        crashed = time.monotonic()
        self._wait(lambda: faults.postmaster_replaced(self.cluster, primary, old),
                   f"a new postmaster on {primary} or another primary")
        _, acked_at, port = self.writable()
        server = next((n for n, node in self.cluster.nodes.items() if node.ports.pg == port), str(port))
        delay = self.rng.uniform(0, 3.0)
        time.sleep(delay)
        self.cluster.kill_node(primary)
        restart = self.restart_later(primary, self.ttl)
        return Injected(f"{primary}'s postmaster killed; writes again after {acked_at - crashed:.1f}s (on {server}); "
                        f"{primary} killed {delay:.1f}s later, restarted after {restart:.1f}s", time.monotonic())

    def sigstop_postgres(self, primary: str) -> Injected:
        frozen = self.ttl * self.rng.uniform(1.5, 3.0)
        self.frozen = faults.freeze_postgres(self.cluster, primary)
        try:
            time.sleep(frozen)
        finally:
            faults.thaw(self.frozen)
            count, self.frozen = len(self.frozen), []
        return Injected(f"{primary}'s PostgreSQL ({count} processes) stopped for {frozen:.1f}s", time.monotonic())

    def power_loss(self, primary: str) -> Injected:
        before = faults.system_identifier(self.cluster.dsn(primary))
        faults.power_loss(self.cluster)
        down = self.rng.uniform(0, self.ttl)
        time.sleep(down)
        for name in self.cluster.nodes:
            self.cluster.start_node(name)
        back = time.monotonic()
        _, acked_at, _ = self.writable(back)
        after = faults.system_identifier(self.cluster.dsn_any_primary())
        changed = after != before
        if changed:
            logger.error("power loss: system identifier %d became %d", before, after)
        return Injected(f"all nodes killed, started {down:.1f}s later; writable {acked_at - back:.1f}s after the "
                        f"start; system identifier {'CHANGED' if changed else 'kept'}", back,
                        writable_s=round(acked_at - back, 2), identifier_changed=changed)

    def _port_partition(self, primary: str, ports: list[int], what: str) -> Injected:
        cut_for = self.ttl * self.rng.uniform(1.5, 3.0)
        faults.block_ports(self.cluster, primary, ports)
        self.blocked.add(primary)
        try:
            time.sleep(cut_for)
        finally:
            faults.unblock_ports(self.cluster, primary)
            self.blocked.discard(primary)
        return Injected(f"{primary}'s {what} dropped for {cut_for:.1f}s", time.monotonic())

    def raft_partition(self, primary: str) -> Injected:
        return self._port_partition(primary, faults.raft_ports(self.cluster), "Raft traffic")

    def replication_partition(self, primary: str) -> Injected:
        return self._port_partition(primary, faults.pg_ports(self.cluster), "PostgreSQL traffic to members")

    def _kill_during(self, primary: str, program: str, lose_data: bool) -> Injected:
        """Kill the primary, let another member take over, restart it (with its data directory lost if
        asked) and kill it again the moment its rejoin runs `program`."""
        node = self.cluster.nodes[primary]
        self.cluster.kill_node(primary)
        self.primary(exclude=primary)
        self.writable()  # the new timeline has writes the old primary lacks
        if lose_data:
            shutil.rmtree(node.data_dir)
            self.lost_disks += 1
        self.cluster.start_node(primary)
        started = time.monotonic()
        found: list[int] = []
        polls = itertools.count()

        def running() -> bool:
            pid = faults.find_program(program, node.data_dir)
            if pid is not None:
                found.append(pid)
                return True
            if next(polls) % 50:  # the /proc scan is the fast path; ask the cluster now and then
                return False
            return primary in self.cluster.streaming_replicas(self.cluster.primary() or primary)

        try:
            wait_for(running, self.recovery_timeout, f"{program} on {primary}", interval=PROGRAM_POLL)
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc
        if not found:
            return Injected(f"{primary} killed and restarted; it rejoined without {program}", time.monotonic())
        delay = self.rng.uniform(0, 0.3)
        time.sleep(delay)
        self.cluster.kill_node(primary)
        seen = time.monotonic() - started
        restart = self.restart_later(primary, self.ttl)
        return Injected(f"{primary} killed, restarted{' without its data directory' if lose_data else ''}; "
                        f"killed again {delay:.2f}s into {program} ({seen:.1f}s after its start), restarted "
                        f"{restart:.1f}s later", time.monotonic())

    def kill_during_rewind(self, primary: str) -> Injected:
        return self._kill_during(primary, "pg_rewind", lose_data=False)

    def kill_during_basebackup(self, primary: str) -> Injected:
        return self._kill_during(primary, "pg_basebackup", lose_data=True)

    def raft_disk_full(self, primary: str) -> Injected:
        if self.disks is None:
            raise RuntimeError("raft_disk_full needs the Raft directories on tmpfs")
        full_for = self.ttl * self.rng.uniform(1.5, 3.0)
        size = self.disks.fill(primary)
        self.filled.add(primary)
        try:
            time.sleep(full_for)
            leader = self.cluster.primary()
        finally:
            self.disks.free(primary)
            self.filled.discard(primary)
        alive = self.cluster.nodes[primary].raftpg_pid() is not None
        if not alive:
            self.cluster.start_node(primary)
        return Injected(f"{primary}'s Raft file system full ({size >> 20} MB filler) for {full_for:.1f}s; primary "
                        f"then {leader}; raftpg {'kept running' if alive else 'exited (restarted)'}", time.monotonic())

    def inject(self, kind: str, primary: str) -> Injected:
        return self.faults[kind](primary)

    def repair(self) -> None:
        """Undo whatever a fault left behind: heal, unblock, resume, free space and start every node."""
        faults.thaw(self.frozen)
        self.frozen = []
        for name in list(self.blocked):
            faults.unblock_ports(self.cluster, name)
        self.blocked.clear()
        if self.disks is not None:
            for name in list(self.filled):
                self.disks.free(name)
        self.filled.clear()
        for name, node in self.cluster.nodes.items():
            if self.cluster.netns:
                with contextlib.suppress(RuntimeError):
                    self.cluster.heal(name)
            pid = node.raftpg_pid()
            if pid is None:
                self.cluster.start_node(name)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


@dataclass
class Pending:
    kind: str
    primary_before: str
    started: float
    injected: Injected


def finish(pending: Pending, end: float, chaos: Chaos, run_start: float) -> FaultResult:
    """Recovery from the health samples (the first healthy sample after the node was back, then an
    acknowledged write), and the longest write gap up to `end` (the next fault or the run's end)."""
    acks = [t for _, t, _ in chaos.checker.writer.acked]
    healthy_at = chaos.monitor.first_healthy(pending.injected.back)
    recovered: float | None = None
    if healthy_at is not None:
        index = bisect.bisect_right(acks, healthy_at)
        if index < len(acks) and acks[index] <= end:
            recovered = acks[index]
    gap, gap_from = write_gap(acks, pending.started, end)
    return FaultResult(
        kind=pending.kind, detail=pending.injected.detail, primary_before=pending.primary_before,
        primary_after=chaos.cluster.primary(), started_s=round(pending.started - run_start, 2),
        recovery_s=None if recovered is None else round(recovered - pending.started, 2), write_gap_s=round(gap, 2),
        write_gap_from_s=round(gap_from, 2), writable_s=pending.injected.writable_s,
        identifier_changed=pending.injected.identifier_changed)


def scratch_dir() -> Path:
    base = Path(tempfile.mkdtemp(prefix="raftpg-chaos-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(base, entry.pw_uid, entry.pw_gid)
    return base


def usable_kinds(args: argparse.Namespace) -> list[str]:
    kinds = [k for k in args.kinds if args.netns or k not in NETNS_KINDS]
    if any(k in NFT_KINDS for k in kinds):
        faults.check_nft()
    if RAFT_DISK_FULL in kinds and os.geteuid() != 0:
        kinds.remove(RAFT_DISK_FULL)
    if not kinds:
        raise SystemExit("no fault kinds left to inject (partitions need --netns, raft_disk_full root)")
    return kinds


def run(args: argparse.Namespace, base: Path) -> Summary:
    rng = random.Random(args.seed)
    kinds = usable_kinds(args)
    cluster = LocalCluster(base_dir=base, ttl=args.ttl, loop_wait=args.loop_wait,
                           retry_timeout=args.retry_timeout, synchronous_mode=args.synchronous_mode,
                           netns=args.netns, scope="chaos")
    disks = faults.RaftDisks(cluster) if RAFT_DISK_FULL in kinds else None
    results: list[FaultResult] = []
    not_recovered = None
    try:
        if disks is not None:
            disks.mount()
        cluster.start()
        cluster.wait_healthy(STARTUP_TIMEOUT)
        checker = SafetyChecker(cluster)
        monitor = HealthMonitor(cluster)
        with checker:
            monitor.start()
            wait_for(lambda: len(checker.writer.acked) >= 20, 30, "the writer's first acknowledgements")
            chaos = Chaos(cluster, checker, monitor, rng, args.recovery_timeout, disks)
            run_start = time.monotonic()
            deadline = run_start + args.minutes * 60 if args.minutes else None
            pending: Pending | None = None
            deck: list[str] = []
            for number in itertools.count(1):
                if args.faults is not None and number > args.faults:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if not deck:  # every kind once per round, in a random order: a short run still has each
                    deck = rng.sample(kinds, len(kinds))
                kind = deck.pop()
                try:
                    if args.wait_recovery or monitor.last_healthy() is None or \
                            time.monotonic() - (monitor.last_healthy() or 0) > args.recovery_timeout:
                        chaos.healthy()  # wait-recovery pacing, or a liveness check after a long unhealthy spell
                        chaos.writable()
                    primary = chaos.primary()
                    started = time.monotonic()
                    if pending is not None:
                        results.append(finish(pending, started, chaos, run_start))
                        log_result(number - 1, results[-1])
                        pending = None
                    pending = Pending(kind, primary, started, chaos.inject(kind, primary))
                    if args.wait_recovery:
                        chaos.healthy()
                        chaos.writable()
                        time.sleep(rng.uniform(1.0, 3.0))  # steady writes before the next fault
                    else:
                        time.sleep(rng.uniform(0, args.ttl))
                except NotRecovered as exc:
                    not_recovered = f"fault {number} ({kind}): {exc}"
                    logger.error("not recovered after %s", not_recovered)
                    chaos.repair()
                    with contextlib.suppress(NotRecovered):
                        chaos.healthy()
                    break
            if pending is not None:
                try:
                    chaos.healthy()
                    chaos.writable()
                except NotRecovered as exc:
                    not_recovered = not_recovered or f"after the last fault ({pending.kind}): {exc}"
                results.append(finish(pending, time.monotonic(), chaos, run_start))
                log_result(len(results), results[-1])
            monitor.stop()
            checker.stop()
            count, examples = overlaps(checker.probers)
            try:
                lost: list[int] | None = missing_writes(cluster.dsn_any_primary(), checker.writer)
                unreplicated_lost: int | None = len(missing_unreplicated(cluster.dsn_any_primary(), checker.writer))
            except psycopg.Error as exc:
                logger.error("could not read the acknowledged writes back: %s", exc)
                lost, unreplicated_lost = None, None
        return Summary(
            args.synchronous_mode, args.ttl, args.seed, not args.wait_recovery, results, len(checker.writer.acked),
            None if lost is None else len(lost), (lost or [])[:50], len(checker.writer.unreplicated),
            unreplicated_lost, sum(p.unreplicated for p in checker.probers), count, examples, not_recovered,
            kind_stats(results))
    finally:
        cluster.stop()
        if disks is not None:
            disks.unmount()


def log_result(number: int, result: FaultResult) -> None:
    recovery = "interrupted by the next fault" if result.recovery_s is None else f"recovered after {result.recovery_s}s"
    logger.info("[%d] %s: %s; primary %s -> %s; %s; longest write gap %.1fs (from %.1fs)", number, result.kind,
                result.detail, result.primary_before, result.primary_after, recovery, result.write_gap_s,
                result.write_gap_from_s)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def report(summary: Summary) -> None:
    pacing = "overlapping (next fault 0..ttl after the node is back)" if summary.overlapping else "after recovery"
    print(f"\nchaos: synchronous_mode {summary.synchronous_mode}, ttl {summary.ttl:g}, seed {summary.seed}, {pacing}")
    print(f"faults injected: {len(summary.faults)}")
    print(f"  {'kind':32} {'count':>5} {'recovered':>9} {'recovery med/max':>17} {'write gap med/max':>18}")
    for kind, stats in summary.by_kind.items():
        print(f"  {kind:32} {stats.count:5d} {stats.recovered:9d} "
              f"{_figure(stats.recovery_median_s):>8}/{_figure(stats.recovery_max_s):<8} "
              f"{_figure(stats.write_gap_median_s):>8}/{_figure(stats.write_gap_max_s):<8}")
    power = [f.writable_s for f in summary.faults if f.writable_s is not None]
    if power:
        print(f"power loss: writable primary after start, median {statistics.median(power):.1f}s, "
              f"max {max(power):.1f}s; system identifier changed {summary.identifier_changes} times")
    print(f"writes acknowledged: {summary.writes_acknowledged}")
    lost_ids = f" {summary.lost_ids[:20]}" if summary.lost_ids else ""
    print(f"acknowledged writes lost: {summary.writes_lost}{lost_ids}")
    print(f"commits with a cancelled synchronous wait (not acknowledged): {summary.writes_unreplicated}, "
          f"of which gone: {summary.unreplicated_lost}; probes: {summary.probes_unreplicated}")
    print(f"overlapping probes: {summary.overlaps}" + (f" {summary.overlap_examples}" if summary.overlaps else ""))
    if summary.not_recovered:
        print(f"NOT RECOVERED: {summary.not_recovered}")
    if summary.synchronous_mode == "off" and summary.writes_lost:
        print("(synchronous_mode off: asynchronous replication may lose the last commits; reported, not failed)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--faults", type=int, help="stop after this many faults")
    parser.add_argument("--minutes", type=float, help="stop injecting after this long")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed; default: random)")
    parser.add_argument("--synchronous-mode", choices=("off", "on", "quorum"), default="off")
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--loop-wait", type=float, default=1.0)
    parser.add_argument("--retry-timeout", type=float, default=None, help="default: 0.4 * ttl")
    parser.add_argument("--faults-kinds", "--kinds", dest="kinds", type=lambda text: text.split(","),
                        default=list(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--wait-recovery", action="store_true",
                        help="start every fault from a healthy cluster (the old pacing)")
    parser.add_argument("--netns", action="store_true", help="network-namespace hosts; adds partitions (root)")
    parser.add_argument("--recovery-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--keep", action="store_true", help="keep the cluster directory (logs) even on success")
    args = parser.parse_args(argv)
    if args.faults is None and args.minutes is None:
        parser.error("give --faults and/or --minutes")
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    if args.retry_timeout is None:
        args.retry_timeout = round(0.4 * args.ttl, 2)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = scratch_dir()
    logger.info("cluster under %s, seed %d", base, args.seed)
    # A SIGTERM unwinds like Ctrl-C, so the cluster and its network namespaces are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        summary = run(args, base)
    except BaseException:
        print(f"cluster logs kept in {base}")
        raise
    report(summary)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    failed = summary.failed or summary.not_recovered is not None
    if failed or args.keep:
        print(f"cluster logs kept in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    if summary.not_recovered is not None:
        return 2
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
