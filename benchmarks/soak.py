"""Soak a 3-node cluster and count every lease change, demotion and moment without exactly one
primary (issue 10.3 / 10.4).

For the whole run, optionally under pgbench (--clients, through the read-write connection string):
- every --probe-ms every member is asked `GET /primary` and `GET /patroni` at the same moment; a
  sample with two 200s is a primaries-at-once violation, one with none a no-primary sample; lease
  version, holder, roles, timelines, postmaster start times and Raft terms are compared between
  samples;
- the lease holder's /patroni is read every --lease-probe-ms: its lease deadline (now +
  lease_time_left) moves once per committed renewal, so the deadlines give when each renewal was
  sent (deadline - ttl), the interval between renewals and the least time left before the fence
  margin (the closest the primary came to stopping answering /primary);
- a writer per member inserts into that member directly every --write-ms on one connection; an
  acknowledged insert means the member was a writable primary, so acknowledgements on two members
  with overlapping intervals are two writable primaries, and every acknowledged row must be on
  the final primary (lost = 0).

Usage: python3 -m benchmarks.soak --minutes 60 --ttl 5 --clients 4 --out benchmarks/results/soak-ttl5-60min.json
Starts PostgreSQL clusters (run as root; nodes run as the postgres user).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from raftpg.devcluster import LocalCluster
from raftpg.ha.lease import fence_margin

HTTP_TIMEOUT = 1.0
PROGRESS_SECONDS = 10
_PROGRESS = re.compile(r"progress: ([\d.]+) s, ([\d.]+) tps")
_TPS = re.compile(r"tps = ([\d.]+) \(without initial connection time\)")


@dataclass(frozen=True)
class Settings:
    minutes: float
    ttl: float
    loop_wait: float
    retry_timeout: float
    mode: str
    clients: int
    probe_ms: int
    lease_probe_ms: int
    write_ms: int


@dataclass(frozen=True)
class MemberSample:
    """One member's answers at one probe."""

    primary_status: int  # HTTP status of GET /primary, 0 if no answer
    role: str | None
    timeline: int | None
    lease_version: int | None
    lease_holder: str | None
    postmaster_start_time: str | None
    raft_term: int | None


def _get(url: str) -> tuple[int, Any]:
    """(HTTP status, JSON body or None); (0, None) without an answer. Plain urllib: one cheap
    request per call, so the probes do not load the machine they measure."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        with contextlib.suppress(ValueError):
            return error.code, json.loads(error.read() or b"null")
        return error.code, None
    except (OSError, ValueError):
        return 0, None


def _member_sample(api_url: str) -> MemberSample:
    status, _ = _get(api_url + "/primary")
    code, doc = _get(api_url + "/patroni")
    own = doc.get("raftpg", {}) if code and isinstance(doc, dict) else {}
    doc = doc if isinstance(doc, dict) else {}
    return MemberSample(status, doc.get("role"), doc.get("timeline"), own.get("lease_version"),
                        own.get("lease_holder"), doc.get("postmaster_start_time"), (own.get("raft") or {}).get("term"))


@dataclass
class Events:
    """Everything the cluster probe saw change, with when (seconds since the run started)."""

    samples: int = 0
    primaries_at_once: list[dict[str, Any]] = field(default_factory=list)
    no_primary: list[float] = field(default_factory=list)
    lease_changes: list[dict[str, Any]] = field(default_factory=list)
    demotions: list[dict[str, Any]] = field(default_factory=list)
    timeline_changes: list[dict[str, Any]] = field(default_factory=list)
    postgres_restarts: list[dict[str, Any]] = field(default_factory=list)
    raft_term_changes: list[dict[str, Any]] = field(default_factory=list)  # Raft elections (any member)
    unanswered: int = 0  # member probes without any answer


class ClusterProbe(threading.Thread):
    """Samples every member at once every period and records what changed."""

    def __init__(self, urls: dict[str, str], period: float, started: float) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.period = period
        self.started = started
        self.events = Events()
        self.holder: str | None = None
        self._halt = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=len(urls))
        self._last: dict[str, MemberSample] = {}

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            self.sample()
            next_at += self.period
            self._halt.wait(max(0.0, next_at - time.monotonic()))
        self._pool.shutdown()

    def sample(self) -> None:
        at = round(time.monotonic() - self.started, 3)
        names = list(self.urls)
        found = dict(zip(names, self._pool.map(_member_sample, self.urls.values()), strict=True))
        ev = self.events
        ev.samples += 1
        ev.unanswered += sum(1 for s in found.values() if s.primary_status == 0)
        primaries = sorted(n for n, s in found.items() if s.primary_status == 200)
        if len(primaries) > 1:
            ev.primaries_at_once.append({"t": at, "members": primaries})
        elif not primaries:
            ev.no_primary.append(at)
        versions = {s.lease_version for s in found.values() if s.lease_version is not None}
        holders = {s.lease_holder for s in found.values() if s.lease_version == max(versions, default=None)}
        previous_version = max((s.lease_version for s in self._last.values() if s.lease_version is not None),
                               default=None)
        if versions and previous_version is not None and max(versions) != previous_version:
            ev.lease_changes.append({"t": at, "from": previous_version, "to": max(versions),
                                     "holder": sorted(h or "" for h in holders)})
        if len(holders) == 1:
            self.holder = next(iter(holders))
        terms = [s.raft_term for s in found.values() if s.raft_term is not None]
        previous_term = max((s.raft_term for s in self._last.values() if s.raft_term is not None), default=None)
        if terms and previous_term is not None and max(terms) != previous_term:
            ev.raft_term_changes.append({"t": at, "from": previous_term, "to": max(terms)})
        for name, now in found.items():
            before = self._last.get(name)
            if before is None or now.role is None:
                continue
            if before.role == "primary" and now.role != "primary":
                ev.demotions.append({"t": at, "member": name, "role": now.role})
            if before.timeline is not None and now.timeline is not None and now.timeline != before.timeline:
                ev.timeline_changes.append({"t": at, "member": name, "from": before.timeline, "to": now.timeline})
            if before.postmaster_start_time and now.postmaster_start_time \
                    and now.postmaster_start_time != before.postmaster_start_time:
                ev.postgres_restarts.append({"t": at, "member": name})
        self._last = {n: s if s.role is not None else self._last.get(n, s) for n, s in found.items()}

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


class LeaseProbe(threading.Thread):
    """Reads the holder's lease_time_left often, to reconstruct every renewal."""

    def __init__(self, cluster_probe: ClusterProbe, period: float) -> None:
        super().__init__(daemon=True)
        self.cluster_probe = cluster_probe
        self.period = period
        self.deadlines: list[tuple[str, float, float]] = []  # holder, deadline, first seen (monotonic)
        self.least_left: float | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            holder = self.cluster_probe.holder
            if holder is not None and holder in self.cluster_probe.urls:
                self._sample(holder)
            next_at += self.period
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def _sample(self, holder: str) -> None:
        code, doc = _get(self.cluster_probe.urls[holder] + "/patroni")
        seen = time.monotonic()
        left = (doc or {}).get("raftpg", {}).get("lease_time_left") if code and isinstance(doc, dict) else None
        if left is None:
            return
        self.least_left = left if self.least_left is None else min(self.least_left, left)
        deadline = seen + float(left)
        # The same renewal read twice gives deadlines a few ms apart (request time, ms rounding).
        if not self.deadlines or self.deadlines[-1][0] != holder or abs(deadline - self.deadlines[-1][1]) > 0.05:
            self.deadlines.append((holder, deadline, seen))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def figures(self, ttl: float) -> dict[str, Any]:
        """Between two renewals of one holder: the interval (deadline to deadline = sent to sent),
        how long after its sending the later one was first seen (commit latency, the status
        refresh and up to one probe period), and the gap: from the earlier one's sending until the
        later one was seen, the time /primary and the fence ran on the earlier one (it must stay
        below ttl - fence margin)."""
        pairs = [(a, b) for a, b in zip(self.deadlines, self.deadlines[1:], strict=False) if a[0] == b[0]]
        intervals = [b[1] - a[1] for a, b in pairs]
        seen_after = [b[2] - (b[1] - ttl) for _, b in pairs]
        gaps = [b[2] - (a[1] - ttl) for a, b in pairs]
        return {"renewals": len(self.deadlines), "interval_s": _distribution(intervals),
                "seen_after_sent_s": _distribution(seen_after), "gap_s": _distribution(gaps),
                "least_time_left_s": self.least_left,
                "least_margin_before_fence_s": None if self.least_left is None
                else round(self.least_left - fence_margin(ttl), 3)}


def _distribution(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 4),
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 4),
            "max": round(ordered[-1], 4)}


class MemberWriter(threading.Thread):
    """Inserts into one member directly on one kept connection; a read-only refusal keeps it."""

    def __init__(self, dsn: str, port: int, period: float) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.port = port
        self.period = period
        self.acked: list[tuple[int, float, float]] = []  # seq, start, end (monotonic)
        self.refused = 0
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        seq = 0
        while not self._halt.wait(self.period):
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                    conn.execute("SET statement_timeout = '3s'")
                seq += 1
                start = time.monotonic()
                conn.execute("INSERT INTO soak_writes (port, seq) VALUES (%s, %s)", (self.port, seq))
                self.acked.append((seq, start, time.monotonic()))
            except psycopg.errors.ReadOnlySqlTransaction:
                self.refused += 1
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)


def overlapping_writes(writers: list[MemberWriter]) -> list[dict[str, Any]]:
    """Acknowledged inserts on two members whose [start, end] intervals overlap."""
    found: list[dict[str, Any]] = []
    for i, a in enumerate(writers):
        for b in writers[i + 1:]:
            starts = [s for _, s, _ in b.acked]
            for _, a_start, a_end in a.acked:
                j = bisect.bisect_left(starts, a_start)
                for k in (j - 1, j):
                    if 0 <= k < len(b.acked) and b.acked[k][1] < a_end and a_start < b.acked[k][2]:
                        found.append({"ports": [a.port, b.port], "t": round(a_start, 3)})
    return found


class Pgbench(threading.Thread):
    """pgbench for the whole run against the read-write connection string; started again if it
    exits early (a failover aborts its clients), each start recorded."""

    def __init__(self, conninfo: str, clients: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.clients = clients
        self.until = time.monotonic() + seconds
        self.progress: list[float] = []
        self.summary_tps: list[float] = []
        self.early_exits: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            left = int(self.until - time.monotonic())
            if left < PROGRESS_SECONDS:
                return
            argv = ["pgbench", "-n", "-c", str(self.clients), "-j", "2", "-T", str(left),
                    "-P", str(PROGRESS_SECONDS), self.conninfo]
            self.process = subprocess.Popen(argv, env={**os.environ, "PGPASSWORD": "postgres-secret"},
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            tail: list[str] = []
            assert self.process.stdout is not None
            for line in self.process.stdout:
                if (m := _PROGRESS.search(line)) is not None:
                    self.progress.append(float(m.group(2)))
                elif (m := _TPS.search(line)) is not None:
                    self.summary_tps.append(float(m.group(1)))
                else:
                    tail = [*tail[-5:], line.strip()]
            code = self.process.wait()
            if not self._halt.is_set() and (code != 0 or self.until - time.monotonic() > PROGRESS_SECONDS):
                self.early_exits.append(f"exit {code}: {' | '.join(tail)}")
                self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.join(timeout=15)

    def figures(self) -> dict[str, Any]:
        return {"clients": self.clients, "tps_progress": _distribution(self.progress),
                "tps_mean": round(statistics.fmean(self.progress), 1) if self.progress else None,
                "summary_tps": self.summary_tps, "early_exits": self.early_exits}


def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="raftpg-soak-"))
    path.chmod(0o777)
    return path


def _commit() -> str:
    source = Path(__file__).resolve().parent.parent
    done = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, timeout=10, check=False)
    return done.stdout.strip() or "unknown"


@contextlib.contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM (nohup runs, a test's timeout) ends the run through the finally blocks that stop
    the cluster by PID."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def soak(settings: Settings, base: Path) -> dict[str, Any]:
    cluster = LocalCluster(base_dir=base, ttl=settings.ttl, loop_wait=settings.loop_wait,
                           retry_timeout=settings.retry_timeout, synchronous_mode=settings.mode)
    cluster.start()
    threads: list[ClusterProbe | LeaseProbe | MemberWriter | Pgbench] = []
    try:
        primary = cluster.wait_healthy(120)
        with psycopg.connect(cluster.dsn(primary), autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE TABLE soak_writes (port int, seq bigint, PRIMARY KEY (port, seq))")
        if settings.clients:
            env = {**os.environ, "PGPASSWORD": "postgres-secret"}
            subprocess.run(["pgbench", "-i", "-s", "1", "-q", cluster.dsn(primary)], env=env, check=True,
                           capture_output=True, timeout=120)
        started = time.monotonic()
        probe = ClusterProbe({n: node.api_url for n, node in cluster.nodes.items()}, settings.probe_ms / 1000,
                             started)
        lease = LeaseProbe(probe, settings.lease_probe_ms / 1000)
        writers = [MemberWriter(cluster.dsn(n), node.ports.pg, settings.write_ms / 1000)
                   for n, node in cluster.nodes.items()]
        bench = Pgbench(cluster.dsn_any_primary(), settings.clients, settings.minutes * 60) \
            if settings.clients else None
        threads = [probe, lease, *writers, *([bench] if bench else [])]
        for thread in threads:
            thread.start()
        end = started + settings.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            ev = probe.events
            print(f"[{time.monotonic() - started:7.0f} s] samples {ev.samples}, lease changes "
                  f"{len(ev.lease_changes)}, demotions {len(ev.demotions)}, primaries at once "
                  f"{len(ev.primaries_at_once)}, no primary {len(ev.no_primary)}, least lease left "
                  f"{lease.least_left}", flush=True)
        for thread in threads:
            thread.stop()
        elapsed = time.monotonic() - started
        final = cluster.wait_primary(60)
        with psycopg.connect(cluster.dsn(final), autocommit=True, connect_timeout=5) as conn:
            present = {(int(p), int(s)) for p, s in conn.execute("SELECT port, seq FROM soak_writes")}
        acked = {(w.port, seq) for w in writers for seq, _, _ in w.acked}
        ev = probe.events
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": _commit(),
            "python": sys.version.split()[0], "settings": asdict(settings),
            "fence_margin_s": fence_margin(settings.ttl), "elapsed_s": round(elapsed, 1),
            "samples": ev.samples, "lease_changes": len(ev.lease_changes), "demotions": len(ev.demotions),
            "timeline_changes": len(ev.timeline_changes), "postgres_restarts": len(ev.postgres_restarts),
            "raft_term_changes": len(ev.raft_term_changes),
            "primaries_at_once": len(ev.primaries_at_once), "no_primary_samples": len(ev.no_primary),
            "unanswered_member_probes": ev.unanswered, "first_primary": primary, "final_primary": final,
            "renewal": lease.figures(settings.ttl),
            "writes": {"acknowledged": len(acked), "lost": len(acked - present),
                       "overlapping": overlapping_writes(writers)[:20],
                       "errors": {w.port: w.errors for w in writers}},
            "pgbench": bench.figures() if bench else None,
            "events": {"lease_changes": ev.lease_changes, "demotions": ev.demotions,
                       "timeline_changes": ev.timeline_changes, "postgres_restarts": ev.postgres_restarts,
                       "raft_term_changes": ev.raft_term_changes,
                       "primaries_at_once": ev.primaries_at_once[:50], "no_primary_at": ev.no_primary[:200]},
        }
    finally:
        for thread in threads:
            thread.stop()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--ttl", type=float, default=5)
    parser.add_argument("--loop-wait", type=float, default=1)
    parser.add_argument("--retry-timeout", type=float, default=None,
                        help="default: 2, or less so that loop_wait + 2 * retry_timeout <= ttl")
    parser.add_argument("--mode", choices=["off", "on", "quorum"], default="quorum")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients; 0 for an idle cluster")
    parser.add_argument("--probe-ms", type=int, default=500)
    parser.add_argument("--lease-probe-ms", type=int, default=100)
    parser.add_argument("--write-ms", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the cluster directory and its logs")
    args = parser.parse_args()
    retry = args.retry_timeout if args.retry_timeout is not None else min(2.0, (args.ttl - args.loop_wait) / 2)
    settings = Settings(args.minutes, args.ttl, args.loop_wait, retry, args.mode, args.clients, args.probe_ms,
                        args.lease_probe_ms, args.write_ms)
    base = _scratch()
    with _terminated_as_exit():
        try:
            result = soak(settings, base)
        finally:
            if args.keep:
                print(f"cluster directory kept: {base}")
            else:
                shutil.rmtree(base, ignore_errors=True)
    summary = {k: result[k] for k in ("lease_changes", "demotions", "primaries_at_once", "no_primary_samples",
                                      "samples", "postgres_restarts", "raft_term_changes")}
    print(json.dumps({"summary": summary, "renewal": result["renewal"], "writes": result["writes"],
                      "pgbench": result["pgbench"]}, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
