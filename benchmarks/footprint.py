"""Memory and CPU per process of a 3-node cluster, idle and under pgbench (issue 10.1).

For each node: raftpg, its fence (the primary's only) and PostgreSQL (the postmaster and all its
children, summed). RSS and PSS come from /proc/PID/smaps_rollup at the end of each window (PSS
splits shared pages among the processes that map them, so it is what a process really costs);
CPU is utime + stime over the window, in % of one core; raftpg's is also split by thread: its
main thread (the asyncio event loop: HA loop, REST API) and the others (pysyncobj's tick thread,
and any short-lived helper thread such as asyncio's child watcher).

Usage: python3 benchmarks/footprint.py [--quick] [--idle-only] [--ttl 5] [--loop-wait 1] [--label NAME]
Writes benchmarks/results/footprint-<label>.json (or --output PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from raftpg.devcluster import LocalCluster, Node
from raftpg.procfs import children_of, process_alive

RESULTS = Path(__file__).resolve().parent / "results"
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
_PGBENCH_CLIENTS = 4


@dataclass(frozen=True)
class Window:
    """How long each phase settles before measuring, and how long it measures."""

    settle: float
    measure: float


@dataclass(frozen=True)
class Usage:
    """One kind of process on one node; several processes (PostgreSQL's) are summed."""

    processes: int
    rss_mib: float
    pss_mib: float
    cpu_percent: float
    main_thread_cpu_percent: float | None = None  # raftpg only: the event loop's share


def _rollup(pid: int) -> tuple[float, float] | None:
    """(RSS, PSS) in MiB, or None if the process is gone."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss"):
                    fields[name] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields.get("Rss", 0) / 1024, fields.get("Pss", 0) / 1024


_TOP_MAPPINGS = 12


def _rss_by_mapping(pid: int) -> dict[str, float]:
    """Where one process's RSS lives, in MiB, largest first: anonymous memory (the Python heap,
    thread stacks, C allocations), then each mapped file (shared libraries: the same text pages
    other processes map count here in full) by name; the rest summed as "other files"."""
    sizes: dict[str, int] = {}
    mapping = "anonymous"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                fields = line.split()
                if fields[0] == "Rss:":
                    sizes[mapping] = sizes.get(mapping, 0) + int(fields[1])
                elif not fields[0].endswith(":") and "-" in fields[0]:  # a mapping's header line
                    path = fields[5] if len(fields) > 5 else ""
                    mapping = "anonymous" if path in ("", "[heap]", "[stack]") else os.path.basename(path)
    except (FileNotFoundError, ProcessLookupError):
        return {}
    ranked = sorted(sizes.items(), key=lambda item: -item[1])
    top = {name: round(kib / 1024, 1) for name, kib in ranked[:_TOP_MAPPINGS]}
    top["other files"] = round(sum(kib for _, kib in ranked[_TOP_MAPPINGS:]) / 1024, 1)
    return top


def _stat_ticks(stat: str) -> int | None:
    """utime + stime from a /proc stat file, or None if the process is gone."""
    try:
        with open(stat) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def _cpu_ticks(pid: int) -> int | None:
    return _stat_ticks(f"/proc/{pid}/stat")  # all threads


def _main_thread_ticks(pid: int) -> int | None:
    return _stat_ticks(f"/proc/{pid}/task/{pid}/stat")  # the main thread's task has the process's id


def _fence_pid(node: Node) -> int | None:
    try:
        pid = int(json.loads((node.raft_dir / "fence.pid").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if process_alive(pid) else None


def _processes(node: Node) -> dict[str, list[int]]:
    raftpg = node.raftpg_pid()
    fence = _fence_pid(node)
    postmaster = node.postmaster_pid()
    return {
        "raftpg": [raftpg] if raftpg else [],
        "fence": [fence] if fence else [],
        "postgres": [postmaster, *children_of(postmaster)] if postmaster else [],
    }


def _measure(cluster: LocalCluster, seconds: float) -> dict[str, dict[str, Usage]]:
    """CPU over `seconds`, memory at the end, per node and kind of process."""
    start = {
        name: {kind: {pid: _cpu_ticks(pid) for pid in pids} for kind, pids in _processes(node).items()}
        for name, node in cluster.nodes.items()
    }
    main_start = {pid: _main_thread_ticks(pid) for kinds in start.values() for pid in kinds["raftpg"]}
    began = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - began
    result: dict[str, dict[str, Usage]] = {}
    for name, node in cluster.nodes.items():
        result[name] = {}
        for kind, pids in _processes(node).items():
            rss = pss = 0.0
            ticks = 0
            counted = 0
            for pid in pids:
                memory = _rollup(pid)
                now = _cpu_ticks(pid)
                if memory is None or now is None:
                    continue
                counted += 1
                rss += memory[0]
                pss += memory[1]
                before = start[name][kind].get(pid)
                # A process born during the window (a pgbench backend) counts from its start.
                ticks += now - (before if before is not None else 0)
            main = None
            if kind == "raftpg" and counted == 1:
                before_main, now_main = main_start.get(pids[0]), _main_thread_ticks(pids[0])
                if before_main is not None and now_main is not None:
                    main = round(100 * (now_main - before_main) / _TICKS / elapsed, 2)
            result[name][kind] = Usage(counted, round(rss, 1), round(pss, 1), round(100 * ticks / _TICKS / elapsed, 2),
                                       main)
    return result


def _pgbench(cluster: LocalCluster, primary: str, args: Iterable[str]) -> subprocess.Popen[bytes]:
    node = cluster.nodes[primary]
    env = {**os.environ, "PGPASSWORD": "postgres-secret"}
    argv = ["pgbench", "-h", node.host, "-p", str(node.ports.pg), "-U", "postgres", *args, "postgres"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _print(phase: str, usage: Mapping[str, Mapping[str, Usage]], primary: str) -> None:
    print(f"\n{phase}: RSS / PSS MiB, CPU % of a core (primary {primary})")
    print(f"{'node':<7} {'process':<9} {'n':>3} {'RSS':>7} {'PSS':>7} {'CPU%':>6}  event loop / other threads")
    for name, kinds in usage.items():
        for kind, u in kinds.items():
            if u.processes:
                split = "" if u.main_thread_cpu_percent is None else \
                    f"  {u.main_thread_cpu_percent:.2f} / {u.cpu_percent - u.main_thread_cpu_percent:.2f}"
                print(f"{name:<7} {kind:<9} {u.processes:>3} {u.rss_mib:>7.1f} {u.pss_mib:>7.1f} {u.cpu_percent:>6.2f}"
                      f"{split}")


def _under_pgbench(cluster: LocalCluster, primary: str, window: Window) -> tuple[dict[str, dict[str, Usage]], str]:
    """Usage while pgbench -c 4 runs on the primary, and pgbench's tps line."""
    init = _pgbench(cluster, primary, ["-i", "-s", "1", "-q"])
    if init.wait(120) != 0:
        raise RuntimeError(f"pgbench -i failed: {init.stdout.read().decode() if init.stdout else ''}")
    duration = int(window.settle + window.measure + 10)
    pgbench = _pgbench(cluster, primary, ["-c", str(_PGBENCH_CLIENTS), "-T", str(duration), "-n"])
    try:
        time.sleep(window.settle)
        loaded = _measure(cluster, window.measure)
        _print(f"pgbench -c {_PGBENCH_CLIENTS}", loaded, primary)
        pgbench.wait(duration + 60)
        output = pgbench.stdout.read().decode() if pgbench.stdout else ""
        tps = next((line for line in output.splitlines() if "tps" in line), "")
        print(tps)
        return loaded, tps
    finally:
        if pgbench.poll() is None:
            pgbench.kill()
            pgbench.wait(10)


def run(*, quick: bool, ttl: float, loop_wait: float, output: Path, idle_only: bool = False,
        measure: float | None = None) -> dict[str, object]:
    window = Window(settle=5, measure=15) if quick else Window(settle=20, measure=60)
    if measure is not None:
        window = replace(window, measure=measure)
    base = Path(tempfile.mkdtemp(prefix="raftpg-footprint-"))
    base.chmod(0o777)
    cluster = LocalCluster(base_dir=base, ttl=ttl, loop_wait=loop_wait, retry_timeout=max(1.0, ttl / 4))
    cluster.start()
    loaded: dict[str, dict[str, Usage]] = {}
    tps = ""
    mappings: dict[str, float] = {}
    try:
        primary = cluster.wait_healthy(120)
        time.sleep(window.settle)
        idle = _measure(cluster, window.measure)
        _print("idle", idle, primary)
        raftpg_pid = cluster.nodes[primary].raftpg_pid()
        mappings = _rss_by_mapping(raftpg_pid) if raftpg_pid else {}
        print(f"\nidle RSS of the primary's raftpg by mapping (MiB): {mappings}")
        if not idle_only:
            loaded, tps = _under_pgbench(cluster, primary, window)
    finally:
        cluster.stop()
        cluster.remove()
    result: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent, check=False
        ).stdout.strip(),
        "python": sys.version.split()[0],
        "settings": {"ttl": ttl, "loop_wait": loop_wait, "quick": quick, "idle_only": idle_only, **asdict(window)},
        "primary": primary,
        "idle": {name: {kind: asdict(u) for kind, u in kinds.items()} for name, kinds in idle.items()},
        "pgbench": {name: {kind: asdict(u) for kind, u in kinds.items()} for name, kinds in loaded.items()},
        "pgbench_tps": tps,
        "primary_raftpg_rss_by_mapping_mib": mappings,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {output}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s settle and 15 s windows instead of 20 and 60")
    parser.add_argument("--idle-only", action="store_true", help="skip the pgbench phase")
    parser.add_argument("--measure", type=float, default=None, help="seconds of each measuring window")
    parser.add_argument("--ttl", type=float, default=5)
    parser.add_argument("--loop-wait", type=float, default=1)
    parser.add_argument("--label", default=None, help="results file name: footprint-<label>.json")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    label = args.label or ("quick" if args.quick else f"ttl{args.ttl:g}")
    output = args.output or RESULTS / f"footprint-{label}.json"
    run(quick=args.quick, ttl=args.ttl, loop_wait=args.loop_wait, output=output, idle_only=args.idle_only,
        measure=args.measure)


if __name__ == "__main__":
    main()
