"""Where an idle member's event loop spends its CPU: cProfile of each raftpg's main thread.

Starts a 3-node cluster whose raftpg processes run under a small launcher that turns cProfile on
at SIGUSR1 and writes the statistics at SIGUSR2 (both delivered to the main thread, the asyncio
event loop: HA loop and REST API; the Raft tick thread is not profiled). Its clock is the main
thread's CPU time, so time spent waiting (for epoll, for the GIL) counts for nothing. Once the cluster is
healthy and has settled, it profiles a window, then prints, per node, the HA cycles run, the CPU
per cycle and the functions that cost the most. cProfile slows what it measures several times
over: the figures rank the costs, the footprint benchmark gives the real CPU.

Usage: python3 benchmarks/loop_profile.py [--seconds 30] [--ttl 5] [--loop-wait 1] [--top 25]
       [--sort tottime|cumulative] [--node NAME] [--save DIR]
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from raftpg.devcluster import LocalCluster
from raftpg.devcluster import cluster as cluster_module

_LAUNCHER = '''
import cProfile, os, runpy, signal, sys, time
profile = cProfile.Profile(time.thread_time)
def _on(*_):
    profile.enable()
def _dump(*_):
    profile.disable()
    profile.dump_stats(f"{PROFILES}/{os.getpid()}.prof")
signal.signal(signal.SIGUSR1, _on)
signal.signal(signal.SIGUSR2, _dump)
sys.argv = ["raftpg", *sys.argv[1:]]
runpy.run_module("raftpg.cli.main", run_name="__main__")
'''


def _cycles(stats: pstats.Stats) -> int:
    """HA cycles run: records.node_status is called once at the end of each (a coroutine such as
    HaLoop.cycle is counted by cProfile once per resumption, not once per call)."""
    for (filename, _, name), (_, calls, _, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name == "node_status" and filename.endswith("raftpg/ha/records.py"):
            return int(calls)
    return 0


def _busy(stats: pstats.Stats) -> float:
    """CPU seconds the main thread used (the profiler's clock is the thread's CPU time)."""
    return float(stats.total_tt)  # type: ignore[attr-defined]


def _problems(log: Path, offset: int) -> list[str]:
    """Warnings and errors a node logged since offset: an idle cluster should log none."""
    with log.open("rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode(errors="replace").splitlines()
    return [line for line in lines if " WARNING " in line or " ERROR " in line]


def run(*, seconds: float, ttl: float, loop_wait: float, top: int, sort: str, only: str | None,
        save: Path | None) -> None:
    base = Path(tempfile.mkdtemp(prefix="raftpg-loop-profile-"))
    base.chmod(0o777)
    launcher = base / "launcher.py"
    launcher.write_text(f"PROFILES = {str(base / 'profiles')!r}\n{_LAUNCHER}")
    launcher.chmod(0o644)
    profiles = base / "profiles"
    profiles.mkdir(mode=0o777)
    profiles.chmod(0o777)
    command = [sys.executable, str(launcher)]
    cluster = LocalCluster(base_dir=base, ttl=ttl, loop_wait=loop_wait, retry_timeout=max(1.0, ttl / 4))
    with mock.patch.object(cluster_module, "raftpg_command", lambda: command):
        cluster.start()
    try:
        primary = cluster.wait_healthy(120)
        time.sleep(20)
        pids = {name: node.raftpg_pid() for name, node in cluster.nodes.items()}
        for pid in pids.values():
            if pid is not None:
                os.kill(pid, signal.SIGUSR1)
        log_offsets = {name: node.log_path.stat().st_size for name, node in cluster.nodes.items()}
        started = time.monotonic()
        time.sleep(seconds)
        for pid in pids.values():
            if pid is not None:
                os.kill(pid, signal.SIGUSR2)
        elapsed = time.monotonic() - started
        time.sleep(2)
        for name, pid in pids.items():
            if only is not None and name != only:
                continue
            path = profiles / f"{pid}.prof"
            if not path.exists():
                print(f"{name}: no profile written")
                continue
            stats = pstats.Stats(str(path))
            cycles = _cycles(stats)
            busy = _busy(stats)
            role = "primary" if name == primary else "replica"
            print(f"\n=== {name} ({role}): {elapsed:.0f} s profiled, {cycles} HA cycles, "
                  f"{busy * 1000:.0f} ms busy in the main thread "
                  f"({busy / elapsed * 100:.2f} % of a core under cProfile"
                  + (f", {busy / cycles * 1000:.2f} ms per cycle)" if cycles else ")"))
            stats.sort_stats(sort).print_stats(top)
            problems = _problems(cluster.nodes[name].log_path, log_offsets[name])
            print(f"{name}: {len(problems)} WARNING/ERROR lines in its log while profiled")
            for line in problems[-5:]:
                print(f"  {line}")
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, save / f"{name}-{role}.prof")
    finally:
        cluster.stop()
        cluster.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--ttl", type=float, default=5)
    parser.add_argument("--loop-wait", type=float, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--node", default=None, help="print only this node's profile")
    parser.add_argument("--save", type=Path, default=None, help="copy the profiles (pstats files) here")
    args = parser.parse_args()
    run(seconds=args.seconds, ttl=args.ttl, loop_wait=args.loop_wait, top=args.top, sort=args.sort,
        only=args.node, save=args.save)


if __name__ == "__main__":
    main()
