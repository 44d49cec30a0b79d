"""How raftpg's cost grows with the member count (issue 10.5): idle clusters of 3, 5 and 7 members.

    python3 -m benchmarks.scale [--sizes 3 5 7] [--seconds 60] [--quick] [--out PATH]

Each size runs as its own quorum-mode cluster (ttl 5, loop_wait 1) that is first left to settle.
Then, over `--seconds`:
- CPU (utime + stime from /proc/PID/stat, % of one core) and RSS per raftpg daemon and fence;
- Raft traffic: the kernel's TCP_INFO counters (`ss -tinp`: data_segs_out, bytes_sent) of every
  socket of a raftpg process whose local or remote port is a Raft port. pysyncobj keeps no message
  counters (getStatus() has none), so a segment carrying data stands for a message: idle Raft
  messages are far smaller than a segment, and several queued in one tick may share one;
- the Raft log's growth (commit_index from GET /raft on the leader): entries committed per second.
Afterwards, for `--latency-seconds`, the lease holder's /patroni `lease_time_left` is polled every
20 ms: right after a renewal it reads ttl minus the time from sending the renewal to the daemon's
status showing its new deadline, so `ttl - time_left` at the first sample after each renewal is
that delay (Raft commit plus the rest of the HA cycle) plus at most one poll interval.
Writes benchmarks/results/scale.json (or --out).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.footprint import Usage, _measure
from raftpg.devcluster import LocalCluster
from raftpg.poll import wait_for

RESULTS = Path(__file__).resolve().parent / "results"
TTL = 5.0
LOOP_WAIT = 1.0
RETRY_TIMEOUT = 2.0
POLL_INTERVAL = 0.02
SETTLE = 10.0  # after the cluster is healthy: let the synchronous set and member records settle

_SOCKET_LINE = re.compile(r"^\S+\s+\S+\s+(\S+):(\d+)\s+(\S+):(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+),")
_COUNTER = re.compile(r"\b(data_segs_out|bytes_sent):(\d+)")


@dataclass(frozen=True)
class SocketEnd:
    pid: int
    local_port: int
    remote_port: int


@dataclass(frozen=True)
class Traffic:
    """What one socket end sent so far."""

    segments: int
    bytes: int


@dataclass(frozen=True)
class NodeCost:
    raftpg_cpu_percent: float
    raftpg_rss_mib: float
    fence_cpu_percent: float
    fence_rss_mib: float
    raft_segments_per_s: float
    raft_kib_per_s: float


@dataclass(frozen=True)
class SizeResult:
    members: int
    seconds: float
    raft_leader: str
    lease_holder: str
    commits_per_s: float
    total_raft_segments_per_s: float
    total_raft_kib_per_s: float
    renewal_delay_ms: Mapping[str, float]
    renewals_seen: int
    nodes: Mapping[str, NodeCost]

    def per_node(self, field: str) -> tuple[float, float, float]:
        """(min, mean, max) of a NodeCost field over the members."""
        values = [float(getattr(cost, field)) for cost in self.nodes.values()]
        return min(values), statistics.fmean(values), max(values)


def raft_sockets(pids: Iterable[int], raft_ports: set[int]) -> dict[SocketEnd, Traffic]:
    """Counters of every established TCP socket of `pids` that talks to or from a Raft port."""
    wanted = set(pids)
    out = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    found: dict[SocketEnd, Traffic] = {}
    lines = out.splitlines()
    for header, info in itertools.pairwise(lines):
        match = _SOCKET_LINE.match(header)
        if match is None:
            continue
        local_port, remote_port, pid = int(match[2]), int(match[4]), int(match[5])
        if pid not in wanted or not ({local_port, remote_port} & raft_ports):
            continue
        counters = dict(_COUNTER.findall(info))
        found[SocketEnd(pid, local_port, remote_port)] = Traffic(int(counters.get("data_segs_out", 0)),
                                                                 int(counters.get("bytes_sent", 0)))
    return found


def sent_since(before: Mapping[SocketEnd, Traffic], after: Mapping[SocketEnd, Traffic],
               pid: int) -> Traffic:
    """What `pid` sent on Raft sockets between two readings; a socket opened in between counts whole."""
    segments = sent = 0
    for end, now in after.items():
        if end.pid != pid:
            continue
        then = before.get(end, Traffic(0, 0))
        segments += now.segments - then.segments
        sent += now.bytes - then.bytes
    return Traffic(segments, sent)


def raft_leader(cluster: LocalCluster) -> tuple[str, int]:
    """(name, commit_index) of the member that says it is the Raft leader."""
    def probe() -> tuple[str, int] | None:
        for name in cluster.nodes:
            status, body = cluster.api_get(name, "/raft")
            if status == 200 and isinstance(body, dict) and body.get("is_leader"):
                return name, int(body["commit_index"])
        return None

    return wait_for(probe, 30, "a Raft leader")


def lease_time_left(cluster: LocalCluster, name: str) -> float | None:
    status, body = cluster.api_get(name, "/patroni", timeout=1.0)
    if status != 200 or not isinstance(body, dict):
        return None
    left = body.get("raftpg", {}).get("lease_time_left")
    return float(left) if isinstance(left, int | float) else None


def renewal_delays(cluster: LocalCluster, holder: str, seconds: float, ttl: float) -> list[float]:
    """ttl - lease_time_left at the first sample after each renewal, in seconds (see module doc)."""
    delays: list[float] = []
    previous: float | None = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = lease_time_left(cluster, holder)
        if left is not None and previous is not None and left > previous + POLL_INTERVAL:
            delays.append(ttl - left)
        if left is not None:
            previous = left
        time.sleep(POLL_INTERVAL)
    return delays


def quantiles_ms(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "median": round(1000 * statistics.median(ordered), 1),
        "p90": round(1000 * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
        "max": round(1000 * ordered[-1], 1),
    }


def measure(cluster: LocalCluster, seconds: float, latency_seconds: float) -> SizeResult:
    """The idle cost of a running, healthy cluster (see module doc)."""
    holder = cluster.wait_healthy(60)
    leader, first_index = raft_leader(cluster)
    raft_ports = {node.ports.raft for node in cluster.nodes.values()}
    pids = {name: node.raftpg_pid() for name, node in cluster.nodes.items()}
    live = [pid for pid in pids.values() if pid is not None]
    before = raft_sockets(live, raft_ports)
    began = time.monotonic()
    usage: dict[str, dict[str, Usage]] = _measure(cluster, seconds)
    elapsed = time.monotonic() - began
    after = raft_sockets(live, raft_ports)
    _, last_index = raft_leader(cluster)
    nodes: dict[str, NodeCost] = {}
    for name, pid in pids.items():
        sent = sent_since(before, after, pid) if pid is not None else Traffic(0, 0)
        nodes[name] = NodeCost(
            raftpg_cpu_percent=usage[name]["raftpg"].cpu_percent,
            raftpg_rss_mib=usage[name]["raftpg"].rss_mib,
            fence_cpu_percent=usage[name]["fence"].cpu_percent,
            fence_rss_mib=usage[name]["fence"].rss_mib,
            raft_segments_per_s=round(sent.segments / elapsed, 1),
            raft_kib_per_s=round(sent.bytes / 1024 / elapsed, 2),
        )
    delays = renewal_delays(cluster, holder, latency_seconds, cluster.ttl)
    return SizeResult(
        members=len(cluster.nodes),
        seconds=round(elapsed, 1),
        raft_leader=leader,
        lease_holder=holder,
        commits_per_s=round((last_index - first_index) / elapsed, 2),
        total_raft_segments_per_s=round(sum(n.raft_segments_per_s for n in nodes.values()), 1),
        total_raft_kib_per_s=round(sum(n.raft_kib_per_s for n in nodes.values()), 2),
        renewal_delay_ms=quantiles_ms(delays),
        renewals_seen=len(delays),
        nodes=nodes,
    )


def run_size(members: int, seconds: float, latency_seconds: float) -> SizeResult:
    base = Path(tempfile.mkdtemp(prefix=f"raftpg-scale-{members}-"))
    base.chmod(0o755)
    cluster = LocalCluster(base_dir=base, size=members, ttl=TTL, loop_wait=LOOP_WAIT, retry_timeout=RETRY_TIMEOUT,
                           synchronous_mode="quorum")
    cluster.start()
    try:
        cluster.wait_healthy(60 + 20 * members)
        time.sleep(SETTLE)
        return measure(cluster, seconds, latency_seconds)
    finally:
        cluster.stop()
        cluster.remove()


def print_table(results: Sequence[SizeResult]) -> None:
    print("members | raftpg CPU %/node min/mean/max | leader CPU % | RSS MiB/node mean | Raft seg/s total "
          "| Raft seg/s leader | Raft KiB/s total | commits/s | renewal delay ms median/p90")
    for r in results:
        cpu = r.per_node("raftpg_cpu_percent")
        rss = r.per_node("raftpg_rss_mib")
        leader = r.nodes[r.raft_leader]
        delay = r.renewal_delay_ms
        print(f"{r.members} | {cpu[0]:.2f}/{cpu[1]:.2f}/{cpu[2]:.2f} | {leader.raftpg_cpu_percent:.2f} "
              f"| {rss[1]:.1f} | {r.total_raft_segments_per_s:.0f} | {leader.raft_segments_per_s:.0f} "
              f"| {r.total_raft_kib_per_s:.1f} | {r.commits_per_s:.2f} "
              f"| {delay.get('median', float('nan')):.0f}/{delay.get('p90', float('nan')):.0f}")


def growth(results: Sequence[SizeResult]) -> dict[str, float]:
    """How much each cost grew from the smallest to the largest cluster, next to the member ratio."""
    small, large = results[0], results[-1]

    def ratio(a: float, b: float) -> float:
        return round(b / a, 2) if a else float("nan")

    return {
        "members": ratio(small.members, large.members),
        "mean_raftpg_cpu_per_node": ratio(small.per_node("raftpg_cpu_percent")[1],
                                          large.per_node("raftpg_cpu_percent")[1]),
        "leader_raftpg_cpu": ratio(small.nodes[small.raft_leader].raftpg_cpu_percent,
                                   large.nodes[large.raft_leader].raftpg_cpu_percent),
        "raft_segments_per_node": ratio(small.total_raft_segments_per_s / small.members,
                                        large.total_raft_segments_per_s / large.members),
        "raft_bytes_per_node": ratio(small.total_raft_kib_per_s / small.members,
                                     large.total_raft_kib_per_s / large.members),
        "commits_per_s": ratio(small.commits_per_s, large.commits_per_s),
    }


def _git_head() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=RESULTS.parent, check=False, timeout=10)
    return done.stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle measurement window per size")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="lease renewal sampling per size")
    parser.add_argument("--quick", action="store_true", help="3 and 5 members, 10 s windows")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes, seconds, latency = (args.sizes, args.seconds, args.latency_seconds)
    if args.quick:
        sizes, seconds, latency = [3, 5], 10.0, 10.0
    results = [run_size(members, seconds, latency) for members in sizes]
    print_table(results)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git_head(),
        "settings": {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                     "synchronous_mode": "quorum", "seconds": seconds, "latency_seconds": latency},
        "results": [asdict(r) for r in results],
        "growth_smallest_to_largest": growth(results),
    }
    print(json.dumps(report["growth_smallest_to_largest"]))
    out = args.out or RESULTS / ("scale-quick.json" if args.quick else "scale.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
