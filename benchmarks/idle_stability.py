"""Spurious failovers or demotions on an idle 3-node cluster: start, note the lease, wait, compare.

Usage: python3 benchmarks/idle_stability.py --minutes 10 --ttl 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from raftpg.devcluster import LocalCluster


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--ttl", type=float, default=5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="raftpg-idle-"))
    base.chmod(0o777)
    cluster = LocalCluster(base_dir=base, ttl=args.ttl, loop_wait=1, retry_timeout=max(1.0, args.ttl / 4))
    cluster.start()
    try:
        primary = cluster.wait_healthy(120)
        version = cluster.api_get(primary, "/patroni")[1]["raftpg"]["lease_version"]
        end = time.monotonic() + args.minutes * 60
        samples = changes = no_primary = 0
        while time.monotonic() < end:
            time.sleep(1)
            samples += 1
            now_primary = cluster.primary()
            if now_primary is None:
                no_primary += 1
                continue
            now_version = cluster.api_get(now_primary, "/patroni")[1]["raftpg"]["lease_version"]
            if now_primary != primary or now_version != version:
                changes += 1
                primary, version = now_primary, now_version
        print(f"idle {args.minutes:g} min at ttl {args.ttl:g}: {changes} lease changes (failovers/demotions), "
              f"{no_primary} of {samples} one-second samples without exactly one /primary=200")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
