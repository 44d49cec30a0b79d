"""`raftpg ctl rolling-restart` with a writer running (issue 8.4): whole-run time, write
unavailability and lost writes, per round, on a local 3-node cluster.

Each round runs `raftpg ctl rolling-restart --force --format json` as an operator would, under the
safety checker of the cluster tests (a writer through the read-write connection string, a prober
per node): the write gap is the longest time between two acknowledgements during the run; lost
acknowledged writes and overlapping writable primaries fail the round. Prints the figures and
writes them as JSON.

Starts PostgreSQL clusters: run it under the shared lock (`flock /tmp/raftpg-cluster.lock ...`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from raftpg.devcluster import LocalCluster
from raftpg.poll import wait_for
from tests.cluster.conftest import scratch_dir
from tests.cluster.safety import SafetyChecker

HEALTHY_TIMEOUT = 90.0
CTL_TIMEOUT = 300.0


def _round(cluster: LocalCluster) -> dict[str, Any]:
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    argv = [sys.executable, "-m", "raftpg.cli.main", "ctl", "-c", str(cluster.nodes[primary].config_path),
            "rolling-restart", "--force", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTPG_")}
    with SafetyChecker(cluster) as checker:
        wait_for(lambda: len(checker.writer.acked) > 50 or None, 30, "the writer to get going")
        began = time.monotonic()
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                              timeout=CTL_TIMEOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rolling-restart exited {done.returncode}: {done.stderr.strip()}")
        new_primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
        gap = checker.writer.max_gap(began)
        checker.verify()  # raises on a lost acknowledged write or two writable primaries
    doc = json.loads(done.stdout)
    return {"total_s": doc["total_seconds"], "write_gap_s": round(gap, 3), "acknowledged": len(checker.writer.acked),
            "lost": 0, "old_primary": primary, "new_primary": new_primary, "steps": doc["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=["off", "on", "quorum"], default="quorum")
    parser.add_argument("--ttl", type=float, default=5)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    base = scratch_dir("raftpg-bench-rolling-")
    cluster = LocalCluster(base_dir=base, ttl=args.ttl, loop_wait=1, retry_timeout=2, synchronous_mode=args.mode)
    rounds: list[dict[str, Any]] = []
    cluster.start()
    try:
        for number in range(1, args.rounds + 1):
            result = _round(cluster)
            rounds.append(result)
            print(f"round {number}: total {result['total_s']:.1f} s, write gap {result['write_gap_s']:.2f} s, "
                  f"{result['old_primary']} -> {result['new_primary']}, {result['acknowledged']} acknowledged, "
                  "0 lost", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    summary = {
        "mode": args.mode, "ttl": args.ttl, "rounds": rounds,
        "total_median_s": round(statistics.median(r["total_s"] for r in rounds), 3),
        "write_gap_median_s": round(statistics.median(r["write_gap_s"] for r in rounds), 3),
        "write_gap_max_s": max(r["write_gap_s"] for r in rounds),
        "lost": 0,
    }
    print(f"median total {summary['total_median_s']} s, median write gap {summary['write_gap_median_s']} s, "
          f"max write gap {summary['write_gap_max_s']} s, 0 lost")
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
