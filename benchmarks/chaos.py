"""Random faults on a local 3-node cluster, with the safety checker's writer and probers running throughout.

Fault kinds: kill -9 of the primary's whole node (restarted after a random delay), kill -9 of the
primary's postmaster only, SIGSTOP of the primary's raftpg beyond ttl (then SIGCONT), a partition
of the primary beyond ttl (then heal; --netns, root only), and kill -9 of a replica while a
switchover is in flight. After each fault every node is running again and the run waits for one
primary with all members streaming and a write acknowledged after that ("recovered"; every fault
also starts from that state), recording the time from injection to recovery and the longest gap
between two acknowledged writes.

At the end: acknowledged writes lost and overlapping probes (two nodes acknowledging writes at once).
With synchronous_mode off a loss is reported (asynchronous replication may lose the last commits);
with on or quorum any loss or overlap exits 1. Not recovering within --recovery-timeout exits 2.

Usage (from the repository root, as root):
  python3 -m benchmarks.chaos --faults 8 --synchronous-mode off --seed 1
  python3 -m benchmarks.chaos --minutes 30 --synchronous-mode quorum --netns --json result.json
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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from raftpg.cli.launcher import LocalCluster, wait_for
from tests.cluster.safety import Prober, SafetyChecker, missing_writes

logger = logging.getLogger("chaos")

KILL_NODE = "kill_primary_node"
KILL_POSTMASTER = "kill_primary_postmaster"
SIGSTOP = "sigstop_primary_raftpg"
PARTITION = "partition_primary"
SWITCHOVER_KILL = "kill_replica_during_switchover"
KINDS = (KILL_NODE, KILL_POSTMASTER, SIGSTOP, PARTITION, SWITCHOVER_KILL)
STARTUP_TIMEOUT = 120.0


class NotRecovered(Exception):
    """The cluster did not get back to one primary with every member streaming in time."""


@dataclass(frozen=True)
class FaultResult:
    kind: str
    detail: str
    primary_before: str
    primary_after: str
    recovery_s: float
    write_gap_s: float
    write_gap_from_s: float  # when the longest gap began, after injection


@dataclass(frozen=True)
class Summary:
    synchronous_mode: str
    ttl: float
    seed: int
    faults: list[FaultResult]
    writes_acknowledged: int
    writes_lost: int | None  # None: the cluster could not be read at the end
    lost_ids: list[int]
    overlaps: int
    overlap_examples: list[str]
    not_recovered: str | None

    @property
    def failed(self) -> bool:
        if self.writes_lost is None:
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


class Chaos:
    def __init__(self, cluster: LocalCluster, checker: SafetyChecker, rng: random.Random,
                 kinds: Sequence[str], recovery_timeout: float) -> None:
        self.cluster = cluster
        self.checker = checker
        self.rng = rng
        self.kinds = kinds
        self.recovery_timeout = recovery_timeout
        self.ttl = cluster.ttl

    def healthy(self) -> str:
        try:
            return self.cluster.wait_healthy(self.recovery_timeout)
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc

    def writable(self) -> None:
        """Wait for the writer's next acknowledgement: a healthy-looking cluster may still refuse writes."""
        since = time.monotonic()
        try:
            wait_for(lambda: self.checker.writer.acked and self.checker.writer.acked[-1][1] > since,
                     self.recovery_timeout, "an acknowledged write")
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc

    def inject(self, kind: str) -> FaultResult:
        before = self.healthy()
        self.writable()
        started = time.monotonic()
        faults: dict[str, Callable[[str], str]] = {
            KILL_NODE: self.kill_node, KILL_POSTMASTER: self.kill_postmaster, SIGSTOP: self.sigstop,
            PARTITION: self.partition, SWITCHOVER_KILL: self.switchover_kill,
        }
        detail = faults[kind](before)
        after = self.healthy()
        self.writable()
        recovered = time.monotonic()
        time.sleep(self.rng.uniform(1.0, 3.0))  # steady writes before the next fault
        gap, gap_from = write_gap([t for _, t, _ in self.checker.writer.acked], started, time.monotonic())
        return FaultResult(kind, detail, before, after, round(recovered - started, 2), round(gap, 2),
                           round(gap_from, 2))

    def kill_node(self, primary: str) -> str:
        delay = self.rng.uniform(0, 2 * self.ttl)
        self.cluster.kill_node(primary)
        time.sleep(delay)
        self.cluster.start_node(primary)
        return f"{primary} killed, restarted after {delay:.1f}s"

    def kill_postmaster(self, primary: str) -> str:
        node = self.cluster.nodes[primary]
        old = node.postmaster_pid()
        self.cluster.kill_postmaster(primary)
        # /primary may answer from a state cached just before the kill: wait for the restart itself.
        try:
            wait_for(lambda: node.postmaster_pid() not in (None, old), self.recovery_timeout,
                     f"a new postmaster on {primary}")
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc
        return f"{primary}'s postmaster killed"

    def sigstop(self, primary: str) -> str:
        frozen = self.ttl * self.rng.uniform(1.5, 3.0)
        self.cluster.kill_raftpg(primary, signal.SIGSTOP)
        try:
            time.sleep(frozen)
        finally:
            self.cluster.kill_raftpg(primary, signal.SIGCONT)
        return f"{primary}'s raftpg stopped for {frozen:.1f}s"

    def partition(self, primary: str) -> str:
        cut_for = self.ttl * self.rng.uniform(1.5, 3.0)
        self.cluster.cut(primary)
        try:
            time.sleep(cut_for)
        finally:
            self.cluster.heal(primary)
        return f"{primary} cut off for {cut_for:.1f}s"

    def switchover_kill(self, primary: str) -> str:
        victim = self.rng.choice([name for name in self.cluster.nodes if name != primary])
        answer: list[tuple[int, object]] = []
        request = threading.Thread(target=lambda: answer.append(self.cluster.api_request(
            primary, "POST", "/switchover", {"leader": primary}, timeout=self.ttl + 20)), daemon=True)
        request.start()
        delay = self.rng.uniform(0.05, 1.0)
        time.sleep(delay)
        self.cluster.kill_node(victim)
        restart = self.rng.uniform(0, self.ttl)
        time.sleep(restart)
        self.cluster.start_node(victim)
        request.join(timeout=self.ttl + 25)
        status, body = answer[0] if answer else ("no answer", None)
        message = body.get("message") or body.get("error") if isinstance(body, dict) else body
        return (f"switchover from {primary} (HTTP {status}: {message}); {victim} killed {delay:.2f}s in, "
                f"restarted {restart:.1f}s later")

    def repair(self) -> None:
        """Undo whatever a fault left behind: heal, resume and start every node."""
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


def scratch_dir() -> Path:
    base = Path(tempfile.mkdtemp(prefix="raftpg-chaos-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(base, entry.pw_uid, entry.pw_gid)
    return base


def run(args: argparse.Namespace, base: Path) -> Summary:
    rng = random.Random(args.seed)
    kinds = [k for k in args.kinds if args.netns or k != PARTITION]
    if not kinds:
        raise SystemExit("no fault kinds left to inject (partitions need --netns)")
    cluster = LocalCluster(base_dir=base, ttl=args.ttl, loop_wait=args.loop_wait,
                           retry_timeout=args.retry_timeout, synchronous_mode=args.synchronous_mode,
                           netns=args.netns, scope="chaos")
    results: list[FaultResult] = []
    not_recovered = None
    try:
        cluster.start()
        cluster.wait_healthy(STARTUP_TIMEOUT)
        checker = SafetyChecker(cluster)
        with checker:
            wait_for(lambda: len(checker.writer.acked) >= 20, 30, "the writer's first acknowledgements")
            chaos = Chaos(cluster, checker, rng, kinds, args.recovery_timeout)
            deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
            for number in itertools.count(1):
                if args.faults is not None and number > args.faults:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                kind = rng.choice(kinds)
                try:
                    result = chaos.inject(kind)
                except NotRecovered as exc:
                    not_recovered = f"fault {number} ({kind}): {exc}"
                    logger.error("not recovered after %s", not_recovered)
                    chaos.repair()
                    with contextlib.suppress(NotRecovered):
                        chaos.healthy()
                    break
                results.append(result)
                logger.info("[%d] %s: %s; primary %s -> %s; recovered after %.1fs; longest write gap %.1fs "
                            "(from %.1fs)", number, kind, result.detail, result.primary_before,
                            result.primary_after, result.recovery_s, result.write_gap_s, result.write_gap_from_s)
            checker.stop()
            count, examples = overlaps(checker.probers)
            try:
                lost: list[int] | None = missing_writes(cluster.dsn_any_primary(), checker.writer)
            except psycopg.Error as exc:
                logger.error("could not read the acknowledged writes back: %s", exc)
                lost = None
        return Summary(args.synchronous_mode, args.ttl, args.seed, results, len(checker.writer.acked),
                       None if lost is None else len(lost), (lost or [])[:50], count, examples, not_recovered)
    finally:
        cluster.stop()


def report(summary: Summary) -> None:
    print(f"\nchaos: synchronous_mode {summary.synchronous_mode}, ttl {summary.ttl:g}, seed {summary.seed}")
    print(f"faults injected: {len(summary.faults)}")
    for kind, count in sorted(Counter(f.kind for f in summary.faults).items()):
        failovers = sum(1 for f in summary.faults if f.kind == kind and f.primary_after != f.primary_before)
        print(f"  {kind}: {count} ({failovers} changed the primary)")
    if summary.faults:
        for label, values in (("recovery (injection to all streaming)", [f.recovery_s for f in summary.faults]),
                              ("longest write gap", [f.write_gap_s for f in summary.faults])):
            print(f"{label}: median {statistics.median(values):.1f}s, max {max(values):.1f}s")
    print(f"writes acknowledged: {summary.writes_acknowledged}")
    lost_ids = f" {summary.lost_ids[:20]}" if summary.lost_ids else ""
    print(f"acknowledged writes lost: {summary.writes_lost}{lost_ids}")
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
    parser.add_argument("--kinds", type=lambda text: text.split(","), default=list(KINDS),
                        help=f"comma-separated subset of {','.join(KINDS)}")
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
