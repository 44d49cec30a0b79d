"""CPU of each idle member's event loop (raftpg's main thread), to the nanosecond, A/B.

footprint.py counts CPU in clock ticks (10 ms): over 30 s one tick is 0.03 % of a core, as much
as a change to the HA loop saves. This reads the main thread's time on CPU from
/proc/PID/task/PID/schedstat (nanoseconds) instead, over a longer window, and can run the same
idle cluster from several source trees one after the other (--tree, e.g. a `git worktree` of
the commit before a change), round after round, so that both sides see the same machine.

Usage: python3 benchmarks/loop_cpu.py [--tree PATH ...] [--rounds 2] [--seconds 60] [--settle 20]
       [--ttl 5] [--loop-wait 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from raftpg.devcluster import LocalCluster

HERE = Path(__file__).resolve().parent.parent


def _on_cpu_ns(pid: int) -> int:
    """Nanoseconds the main thread (its task id is the process id) has run."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def _describe(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True,
                          text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no", "raftpg"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return done.stdout.strip()[:100] + (" + uncommitted changes" if dirty else "")


def measure(tree: Path, *, seconds: float, settle: float, ttl: float, loop_wait: float) -> dict[str, object]:
    """One idle cluster run from `tree`: main-thread CPU per member, % of a core."""
    os.environ["PYTHONPATH"] = str(tree)  # the members import raftpg from the tree under test
    base = Path(tempfile.mkdtemp(prefix="raftpg-loop-cpu-"))
    base.chmod(0o777)
    cluster = LocalCluster(base_dir=base, ttl=ttl, loop_wait=loop_wait, retry_timeout=max(1.0, ttl / 4))
    cluster.start()
    try:
        primary = cluster.wait_healthy(120)
        time.sleep(settle)
        pids = {name: node.raftpg_pid() for name, node in cluster.nodes.items()}
        before = {name: _on_cpu_ns(pid) for name, pid in pids.items() if pid is not None}
        began = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - began
        after = {name: _on_cpu_ns(pid) for name, pid in pids.items() if pid is not None}
    finally:
        cluster.stop()
        cluster.remove()
        del os.environ["PYTHONPATH"]
    percent = {name: round((after[name] - before[name]) / 1e9 / elapsed * 100, 3) for name in before}
    return {"primary": primary, "main_thread_cpu_percent": percent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, action="append", default=None,
                        help="source tree to run the members from (repeat for A/B; default: this one)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--settle", type=float, default=20)
    parser.add_argument("--ttl", type=float, default=5)
    parser.add_argument("--loop-wait", type=float, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    trees = [tree.resolve() for tree in (args.tree or [HERE])]
    runs: dict[str, list[dict[str, object]]] = {str(tree): [] for tree in trees}
    for round_ in range(args.rounds):
        for tree in trees:
            run = measure(tree, seconds=args.seconds, settle=args.settle, ttl=args.ttl, loop_wait=args.loop_wait)
            runs[str(tree)].append(run)
            percent = run["main_thread_cpu_percent"]
            assert isinstance(percent, dict)
            shown = ", ".join(f"{name}{'*' if name == run['primary'] else ''} {value:.3f}"
                              for name, value in sorted(percent.items()))
            print(f"round {round_ + 1} {tree}: main thread % of a core: {shown}  (* primary)", flush=True)
    summary = {}
    for tree in trees:
        primary = [r["main_thread_cpu_percent"][r["primary"]] for r in runs[str(tree)]]  # type: ignore[index]
        replicas = [value for r in runs[str(tree)] for name, value in r["main_thread_cpu_percent"].items()  # type: ignore[attr-defined]
                    if name != r["primary"]]
        summary[str(tree)] = {"source": _describe(tree), "primary_median": statistics.median(primary),
                              "replica_median": statistics.median(replicas)}
        print(f"{tree} ({summary[str(tree)]['source']}): primary {statistics.median(primary):.3f} %, "
              f"replicas {statistics.median(replicas):.3f} % (medians)")
    if args.json is not None:
        result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "python": sys.version.split()[0],
                  "settings": {"ttl": args.ttl, "loop_wait": args.loop_wait, "seconds": args.seconds,
                               "settle": args.settle, "rounds": args.rounds},
                  "summary": summary, "runs": runs}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {args.json}")


if __name__ == "__main__":
    main()
