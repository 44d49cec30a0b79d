"""Figures of the single-file build (issue 8.1): build time, size, start time, time to a ready
cluster, and idle memory per node from dist/raftpg versus from this Python (a venv/checkout).

- build: `make dist` wall time (`--clean` removes build/ and dist/ first: a build from scratch).
- start: `raftpg version`, N runs each of the binary and of `python -m raftpg.cli.main`.
- ready: three network-namespace hosts provisioned by packaging/provision.sh, started from the
  installed binary as postgres at once; seconds until one primary has two streaming replicas.
- idle memory: after --settle seconds idle, RSS and PSS of each node's raftpg process tree
  (the single file is a bootloader plus its Python child), then the same for a loopback cluster
  run from this Python by LocalCluster.

Root only (namespaces, postgres). Usage: python3 -m benchmarks.dist [--clean] [--runs 20] [--settle 10]
Writes benchmarks/results/dist.json (or --output PATH).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raftpg.devcluster import LocalCluster
from tests.cluster.conftest import scratch_dir
from tests.cluster.dist_hosts import CHECKOUT, DistCluster, clean_env

RESULTS = Path(__file__).resolve().parent / "results"
BINARY = CHECKOUT / "dist" / "raftpg"
READY_TIMEOUT = 180.0


def build(clean: bool) -> float:
    if clean:
        subprocess.run(["make", "-C", str(CHECKOUT), "clean-dist"], check=True, timeout=120,
                       capture_output=True)
    started = time.monotonic()
    subprocess.run(["make", "-C", str(CHECKOUT), "dist"], check=True, timeout=1800, capture_output=True)
    return time.monotonic() - started


def start_times(argv: list[str], runs: int) -> dict[str, float]:
    """Wall seconds of `argv version` from a directory outside the checkout; one warm-up run first."""
    samples = []
    with tempfile.TemporaryDirectory() as cwd:
        for index in range(runs + 1):
            started = time.perf_counter()
            subprocess.run([*argv, "version"], check=True, timeout=60, cwd=cwd, capture_output=True,
                           env=clean_env(Path(cwd)))
            if index:
                samples.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(samples), 3), "min_s": round(min(samples), 3),
            "max_s": round(max(samples), 3), "runs": runs}


def tree_memory_kib(pid: int) -> dict[str, int]:
    """RSS and PSS (smaps_rollup) of a process and its descendants."""
    totals = {"rss_kib": 0, "pss_kib": 0}
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    totals[f"{key.lower()}_kib"] += int(rest.split()[0])
            pending += [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
        except OSError:
            continue
    return totals


def binary_cluster(settle: float) -> dict[str, Any]:
    base = scratch_dir("raftpg-bench-dist-")
    cluster = DistCluster(binary=BINARY, base=base)
    try:
        cluster.create()
        secrets = base / "cluster-secrets.yml"
        subprocess.run([str(BINARY), "config", "secrets", "-o", str(secrets)], check=True, timeout=60,
                       capture_output=True, env=clean_env(base), cwd=base)
        cluster.provision(secrets)
        started = time.monotonic()
        cluster.start_stopped().wait_healthy(READY_TIMEOUT)
        ready = time.monotonic() - started
        time.sleep(settle)
        memory = {h.name: tree_memory_kib(h.process.pid) for h in cluster.hosts if h.process is not None}
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    return {"ready_s": round(ready, 2), "idle_memory": memory}


def python_cluster(settle: float) -> dict[str, Any]:
    base = scratch_dir("raftpg-bench-venv-")
    cluster = LocalCluster(base_dir=base, ttl=5, loop_wait=1, retry_timeout=2, synchronous_mode="quorum")
    try:
        started = time.monotonic()
        cluster.start()
        cluster.wait_healthy(READY_TIMEOUT)
        ready = time.monotonic() - started
        time.sleep(settle)
        memory = {name: tree_memory_kib(pid) for name, node in cluster.nodes.items()
                  if (pid := node.raftpg_pid()) is not None}
    finally:
        cluster.stop()
        cluster.remove()
    return {"ready_s": round(ready, 2), "idle_memory": memory}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", action="store_true", help="build from scratch (removes build/ and dist/)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "dist.json")
    args = parser.parse_args()
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "build_s": round(build(args.clean), 1), "clean_build": args.clean}
    result["size_bytes"] = BINARY.stat().st_size
    result["start"] = {"binary": start_times([str(BINARY)], args.runs),
                       "python": start_times([sys.executable, "-m", "raftpg.cli.main"], args.runs)}
    result["cluster"] = {"binary": binary_cluster(args.settle), "python": python_cluster(args.settle)}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
