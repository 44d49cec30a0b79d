"""Write unavailability when the primary's PostgreSQL dies (issue 7.2 / 10.2).

Scenarios, on a local 3-node cluster in quorum mode (ttl 5, loop_wait 1, retry_timeout 2 by default):
- `postmaster`: kill -9 of the primary's postmaster (raftpg keeps running);
- `node-restart`: kill -9 of the primary's raftpg, postmaster and fence, raftpg started again at
  once (as a supervisor would).

A writer inserts rows through the read-write connection string as fast as it can; the write gap of
a round is the longest time between two acknowledgements from the last one before the kill until
every member streams again (a write in flight at the kill may be acknowledged just after it). At
the end every acknowledged row must be on the primary (lost = 0). Prints the figures and writes
them as JSON. Run it from the repository root as `python3 -m benchmarks.postmaster_kill` (it uses
the fault helpers in tests/cluster).

Starts PostgreSQL clusters: run it under the shared lock (`flock /tmp/raftpg-cluster.lock ...`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pwd
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

import raftpg
from raftpg.poll import wait_for
from tests.cluster.faults import FaultCluster

RECOVERY_TIMEOUT = 90.0


@dataclass(eq=False)
class Writer(threading.Thread):
    """Inserts ids 1, 2, ... and records the monotonic time of each acknowledgement."""

    dsn: str
    acked: list[tuple[int, float]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # server port of each acknowledgement

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self._halt = threading.Event()

    def run(self) -> None:
        next_id = 1
        conn: psycopg.Connection | None = None
        while not self._halt.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                    conn.execute("SET statement_timeout = '3s'")
                    port = int(conn.execute("SELECT inet_server_port()").fetchone()[0])  # type: ignore[index]
                conn.execute("INSERT INTO bench_acked (id) VALUES (%s)", (next_id,))
                self.acked.append((next_id, time.monotonic()))
                self.ports.append(port)
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
            next_id += 1  # an unknown outcome is never retried under the same id
            time.sleep(0.002)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)

    def gap_from(self, moment: float) -> float | None:
        """Longest time between two acknowledgements from the last one before `moment` on (a
        write in flight at the kill may still be acknowledged just after it)."""
        times = [t for _, t in self.acked]
        before = [t for t in times if t <= moment]
        if not before:
            return None
        window = [t for t in times if t >= before[-1]]
        return max((b - a for a, b in itertools.pairwise(window)), default=None)


def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="raftpg-bench-pmkill-"))
    path.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _sync_published(cluster: FaultCluster, primary: str) -> bool:
    status, body = cluster.api_get(primary, "/cluster")
    sync = ((body or {}).get("raftpg", {}).get("sync") or {}) if status == 200 else {}
    return bool(sync.get("members")) and bool(sync.get("quorum"))


def _round(cluster: FaultCluster, scenario: str) -> dict[str, Any]:
    primary = cluster.wait_healthy(RECOVERY_TIMEOUT)
    wait_for(lambda: _sync_published(cluster, primary), 30, "the synchronous set")
    writer = Writer(cluster.dsn_any_primary())
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) > 50, 30, "the writer to get going")
        killed_at = time.monotonic()
        if scenario == "postmaster":
            cluster.kill_postmaster(primary)
        else:
            cluster.kill_node(primary)
            cluster.start_node(primary)
        # Right after the kill the old primary's cached health may still say "primary": judge by
        # where writes are acknowledged, then wait until every member streams again.
        wait_for(lambda: writer.acked[-1][1] > killed_at + 0.5, RECOVERY_TIMEOUT, "writes after the kill")
        cluster.wait_healthy(RECOVERY_TIMEOUT)
        healthy_at = time.monotonic()
        wait_for(lambda: writer.acked[-1][1] > healthy_at + 0.5, RECOVERY_TIMEOUT,
                 "writes once every member streams again")
    finally:
        writer.stop()
    by_port = {node.ports.pg: name for name, node in cluster.nodes.items()}
    new_primary = by_port.get(writer.ports[-1], "?")
    with psycopg.connect(cluster.dsn_any_primary(), autocommit=True, connect_timeout=5) as conn:
        present = {int(row[0]) for row in conn.execute("SELECT id FROM bench_acked").fetchall()}
        conn.execute("TRUNCATE bench_acked")
    lost = sorted({i for i, _ in writer.acked} - present)
    gap = writer.gap_from(killed_at)
    return {"old_primary": primary, "new_primary": new_primary, "failover": new_primary != primary,
            "write_gap_s": round(gap, 3) if gap is not None else None,
            "acknowledged": len(writer.acked), "lost": len(lost)}


def _commit() -> str:
    source = Path(raftpg.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--", "raftpg"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["postmaster", "node-restart"], default="postmaster")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mode", choices=["off", "on", "quorum"], default="quorum")
    parser.add_argument("--ttl", type=float, default=5)
    parser.add_argument("--loop-wait", type=float, default=1)
    parser.add_argument("--retry-timeout", type=float, default=2)
    parser.add_argument("--start-timeout", default="default",
                        help="primary_start_timeout: a number, 'unset' (the mode decides) or 'default' "
                             "(whatever the launcher of the checkout measured sets)")
    parser.add_argument("--label", default="")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory and logs")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    extra: dict[str, Any] = {}
    if args.start_timeout == "unset":
        extra["primary_start_timeout"] = None
    elif args.start_timeout != "default":
        extra["primary_start_timeout"] = float(args.start_timeout)
    base = _scratch()
    cluster = FaultCluster(base_dir=base, ttl=args.ttl, loop_wait=args.loop_wait, retry_timeout=args.retry_timeout,
                           synchronous_mode=args.mode, dcs_extra=extra)
    rounds: list[dict[str, Any]] = []
    cluster.start()
    try:
        primary = cluster.wait_healthy(RECOVERY_TIMEOUT)
        with psycopg.connect(cluster.dsn(primary), autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bench_acked (id bigint PRIMARY KEY)")
        for number in range(1, args.rounds + 1):
            result = _round(cluster, args.scenario)
            rounds.append(result)
            print(f"round {number}: write gap {result['write_gap_s']} s, "
                  f"{'failover to ' + result['new_primary'] if result['failover'] else 'restarted in place'}, "
                  f"{result['acknowledged']} acknowledged, {result['lost']} lost", flush=True)
    finally:
        cluster.stop()
        if args.keep:
            print(f"cluster logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    gaps = [r["write_gap_s"] for r in rounds if r["write_gap_s"] is not None]
    summary = {
        "label": args.label, "commit": _commit(), "scenario": args.scenario, "mode": args.mode, "ttl": args.ttl,
        "loop_wait": args.loop_wait, "retry_timeout": args.retry_timeout, "start_timeout": args.start_timeout,
        "rounds": rounds, "write_gap_median_s": round(statistics.median(gaps), 3) if gaps else None,
        "write_gap_max_s": max(gaps) if gaps else None, "lost": sum(r["lost"] for r in rounds),
        "failovers": sum(1 for r in rounds if r["failover"]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"{args.label or args.scenario}: write gap median {summary['write_gap_median_s']} s, "
          f"max {summary['write_gap_max_s']} s over {len(rounds)} rounds; {summary['lost']} acknowledged writes "
          f"lost; {summary['failovers']} failovers")
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
