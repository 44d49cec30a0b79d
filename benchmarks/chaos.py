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
Writes a primary acknowledged while it ran asynchronously (synchronous_standby_names empty: the
documented non-strict fallback when no standby is left) are counted apart too: losing them is what
`synchronous_mode_strict: false` allows, so they are reported, and a failure only with --strict.
With synchronous_mode off a loss is reported; with on or quorum any other loss, an overlap or a
changed system identifier exits 1. Not recovering within --recovery-timeout exits 2.

Usage (from the repository root, as root):
  python3 -m benchmarks.chaos --faults 8 --synchronous-mode off --seed 1
  python3 -m benchmarks.chaos --faults 208 --synchronous-mode quorum --strict --tls --ttl 5 --netns \
      --json result.json
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from benchmarks.chaos_kinds import KINDS, NETNS_KINDS, NFT_KINDS, RAFT_DISK_FULL, Chaos, Injected, NotRecovered
from raftpg.poll import wait_for
from tests.cluster import faults
from tests.cluster.faults import FaultCluster
from tests.cluster.safety import Prober, SafetyChecker, missing_unreplicated, missing_writes

logger = logging.getLogger("chaos")

STARTUP_TIMEOUT = 120.0
HEALTH_INTERVAL = 0.2


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
    strict: bool
    tls: bool
    ttl: float
    seed: int
    overlapping: bool
    faults: list[FaultResult]
    writes_acknowledged: int
    writes_lost: int | None  # None: the cluster could not be read at the end
    lost_ids: list[int]
    writes_asynchronous: int  # acknowledged while the primary ran asynchronously
    asynchronous_lost: int | None  # of those, gone; counted in writes_lost only with --strict
    asynchronous_lost_ids: list[int]
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

    def __init__(self, cluster: FaultCluster) -> None:
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


@dataclass
class Pending:
    kind: str
    primary_before: str
    started: float
    injected: Injected


def finish(pending: Pending, end: float, chaos: Chaos, monitor: HealthMonitor, run_start: float) -> FaultResult:
    """Recovery from the health samples (the first healthy sample after the node was back, then an
    acknowledged write), and the longest write gap up to `end` (the next fault or the run's end)."""
    acks = [t for _, t, _ in chaos.checker.writer.acked]
    healthy_at = monitor.first_healthy(pending.injected.back)
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
    cluster = FaultCluster(base_dir=base, ttl=args.ttl, loop_wait=args.loop_wait,
                           retry_timeout=args.retry_timeout, synchronous_mode=args.synchronous_mode,
                           dcs_extra={"synchronous_mode_strict": args.strict}, tls=args.tls, netns=args.netns,
                           scope="chaos")
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
            chaos = Chaos(cluster, checker, rng, args.recovery_timeout, disks)
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
                        results.append(finish(pending, started, chaos, monitor, run_start))
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
                results.append(finish(pending, time.monotonic(), chaos, monitor, run_start))
                log_result(len(results), results[-1])
            monitor.stop()
            checker.stop()
            count, examples = overlaps(checker.probers)
            asynchronous = checker.writer.asynchronous
            try:
                missing = missing_writes(cluster.dsn_any_primary(), checker.writer)
                lost: list[int] | None = [i for i in missing if args.strict or i not in asynchronous]
                async_lost: list[int] | None = [i for i in missing if i in asynchronous]
                unreplicated_lost: int | None = len(missing_unreplicated(cluster.dsn_any_primary(), checker.writer))
            except psycopg.Error as exc:
                logger.error("could not read the acknowledged writes back: %s", exc)
                lost, async_lost, unreplicated_lost = None, None, None
        return Summary(
            args.synchronous_mode, args.strict, args.tls, args.ttl, args.seed, not args.wait_recovery, results,
            len(checker.writer.acked), None if lost is None else len(lost), (lost or [])[:50], len(asynchronous),
            None if async_lost is None else len(async_lost), (async_lost or [])[:50], len(checker.writer.unreplicated),
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
    strict = (" (strict)" if summary.strict else "") + (", REST API over TLS" if summary.tls else "")
    print(f"\nchaos: synchronous_mode {summary.synchronous_mode}{strict}, ttl {summary.ttl:g}, "
          f"seed {summary.seed}, {pacing}")
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
    async_ids = f" {summary.asynchronous_lost_ids[:20]}" if summary.asynchronous_lost_ids else ""
    print(f"acknowledged while the primary ran asynchronously (non-strict fallback): {summary.writes_asynchronous}, "
          f"of which gone: {summary.asynchronous_lost}{async_ids}"
          + ("" if summary.strict else " (allowed by synchronous_mode_strict: false; reported, not failed)"))
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
    parser.add_argument("--strict", action="store_true",
                        help="synchronous_mode_strict: true (never fall back to asynchronous commits)")
    parser.add_argument("--tls", action="store_true",
                        help="the REST API over TLS with client certificates required (README's recommended setup)")
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
