"""Crash failover time: kill -9 of the primary's whole node (raftpg, its fence, the postmaster and
its backends), nothing restarted until another member took over (issue 10.3: ttl 2 target
<= 2.5 s median).

Per round, on a local 3-node cluster (quorum mode by default): a writer inserts through the
read-write connection string; the failover time is from the kill to the first write acknowledged
by another member, and /primary is polled to time when another member first answers 200. The
killed node is then started again and the next round waits for every member to stream. At the end
every acknowledged row must be on the primary (lost = 0).

Usage: python3 -m benchmarks.crash_failover --ttl 2 --rounds 5 --out benchmarks/results/crash-failover-ttl2.json
Starts PostgreSQL clusters (run as root; nodes run as the postgres user).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.postmaster_kill import RECOVERY_TIMEOUT, Writer, _sync_published
from benchmarks.soak import _commit
from raftpg.poll import wait_for
from tests.cluster.faults import FaultCluster


def _new_primary_answers(cluster: FaultCluster, old: str, timeout: float) -> float:
    """Monotonic time at which a member other than `old` first answers /primary with 200."""
    others = [name for name in cluster.nodes if name != old]

    def probe() -> float | None:
        for name in others:
            if cluster.api_get(name, "/primary", timeout=0.5)[0] == 200:
                return time.monotonic()
        return None

    return wait_for(probe, timeout, "another member answering /primary", interval=0.02)


def _round(cluster: FaultCluster, mode: str) -> dict[str, Any]:
    primary = cluster.wait_healthy(RECOVERY_TIMEOUT)
    if mode != "off":
        wait_for(lambda: _sync_published(cluster, primary), 30, "the synchronous set")
    with psycopg.connect(cluster.dsn(primary), autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_acked (id bigint PRIMARY KEY)")
    old_port = cluster.nodes[primary].ports.pg
    writer = Writer(cluster.dsn_any_primary())
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) > 50, 30, "the writer to get going")
        killed_at = time.monotonic()
        cluster.kill_node(primary)
        answered_at = _new_primary_answers(cluster, primary, RECOVERY_TIMEOUT)
        wait_for(lambda: writer.ports and writer.ports[-1] != old_port, RECOVERY_TIMEOUT,
                 "a write acknowledged by another member")
        first_new = next(t for (_, t), port in zip(writer.acked, writer.ports, strict=True)
                         if port != old_port and t > killed_at)
        cluster.start_node(primary)
        cluster.wait_healthy(RECOVERY_TIMEOUT)
    finally:
        writer.stop()
    with psycopg.connect(cluster.dsn_any_primary(), autocommit=True, connect_timeout=5) as conn:
        present = {int(row[0]) for row in conn.execute("SELECT id FROM bench_acked").fetchall()}
        conn.execute("TRUNCATE bench_acked")
    by_port = {node.ports.pg: name for name, node in cluster.nodes.items()}
    return {"old_primary": primary, "new_primary": by_port.get(writer.ports[-1], "?"),
            "first_write_s": round(first_new - killed_at, 3),
            "primary_answers_s": round(answered_at - killed_at, 3),
            "acknowledged": len(writer.acked), "lost": len({i for i, _ in writer.acked} - present)}


def _reported(number: int, result: dict[str, Any]) -> dict[str, Any]:
    print(f"round {number}: {result['old_primary']} -> {result['new_primary']}: first write after "
          f"{result['first_write_s']} s, /primary after {result['primary_answers_s']} s, "
          f"{result['lost']} of {result['acknowledged']} lost", flush=True)
    return result


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ttl", type=float, default=3,
                        help="ttl 2 needs raftpg.config MIN_TTL lowered to 2 (it refuses ttl < 3)")
    parser.add_argument("--loop-wait", type=float, default=1)
    parser.add_argument("--retry-timeout", type=float, default=None,
                        help="default: 2, or less so that loop_wait + 2 * retry_timeout <= ttl")
    parser.add_argument("--mode", choices=["off", "on", "quorum"], default="quorum")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    retry = args.retry_timeout if args.retry_timeout is not None else min(2.0, (args.ttl - args.loop_wait) / 2)
    base = Path(tempfile.mkdtemp(prefix="raftpg-crash-"))
    base.chmod(0o777)
    cluster = FaultCluster(base_dir=base, ttl=args.ttl, loop_wait=args.loop_wait, retry_timeout=retry,
                           synchronous_mode=args.mode)
    cluster.start()
    try:
        rounds = [_reported(number, _round(cluster, args.mode)) for number in range(1, args.rounds + 1)]
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": _commit(),
        "python": sys.version.split()[0],
        "settings": {"ttl": args.ttl, "loop_wait": args.loop_wait, "retry_timeout": retry, "mode": args.mode},
        "rounds": rounds, "first_write_median_s": _median([r["first_write_s"] for r in rounds]),
        "first_write_max_s": max((r["first_write_s"] for r in rounds), default=None),
        "primary_answers_median_s": _median([r["primary_answers_s"] for r in rounds]),
        "lost": sum(r["lost"] for r in rounds),
    }
    print(f"crash failover at ttl {args.ttl:g}: first write on the new primary after "
          f"{summary['first_write_median_s']} s median (max {summary['first_write_max_s']} s), /primary after "
          f"{summary['primary_answers_median_s']} s median, {summary['lost']} acknowledged writes lost")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
