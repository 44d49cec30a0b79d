"""raftpg adapter for /work/shared/bench/failover_bench.py (the contract is in that file's docstring).

Each subcommand is a separate process, so the cluster lives on disk: `start` writes the node
configs under the state dir and later calls rebuild it with attach_cluster. The nodes are
started in their own sessions and outlive `start`.

Environment: TTL, LOOP_WAIT, RETRY_TIMEOUT (seconds), SYNC_MODE (off|on|quorum),
RAFTPG_BENCH_DIR (state dir, default /tmp/raftpg-bench).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

import raftpg
from raftpg.devcluster import LocalCluster, attach_cluster

logger = logging.getLogger(__name__)

# The same PostgreSQL settings as the Patroni adapter (patroni_cluster.sh), so both sides compare like with like.
BENCH_PARAMETERS = {"shared_buffers": "64MB", "max_connections": "50", "wal_keep_size": "256MB"}
SIZE = 3
STOP_TIMEOUT = 60.0
SWITCHOVER_TIMEOUT = 90.0
NEW_PRIMARY_TIMEOUT = 60.0


def state_dir() -> Path:
    return Path(os.environ.get("RAFTPG_BENCH_DIR", "/tmp/raftpg-bench"))


def settings() -> dict[str, object]:
    sync_mode = os.environ.get("SYNC_MODE", "off")
    if sync_mode not in ("off", "on", "quorum"):
        raise SystemExit(f"SYNC_MODE must be off, on or quorum, not {sync_mode!r}")
    return {"ttl": float(os.environ.get("TTL", "5")), "loop_wait": float(os.environ.get("LOOP_WAIT", "1")),
            "retry_timeout": float(os.environ.get("RETRY_TIMEOUT", "2")), "synchronous_mode": sync_mode}


def attach() -> LocalCluster:
    return attach_cluster(state_dir())


def cmd_start() -> None:
    base = state_dir()
    if any(base.glob("*/node.yml")):
        cmd_stop()
    s = settings()
    cluster = LocalCluster(base_dir=base, size=SIZE, scope="bench", ttl=float(str(s["ttl"])),
                           loop_wait=float(str(s["loop_wait"])), retry_timeout=float(str(s["retry_timeout"])),
                           synchronous_mode=str(s["synchronous_mode"]), parameters=dict(BENCH_PARAMETERS))
    cluster.start()
    logger.info("started %d raftpg nodes under %s", SIZE, base)


def cmd_stop() -> None:
    """SIGTERM every recorded raftpg, wait for it, then let the launcher kill leftovers by PID."""
    base = state_dir()
    if not any(base.glob("*/node.yml")):
        return
    cluster = attach()
    running = {name: pid for name, node in cluster.nodes.items() if (pid := node.raftpg_pid()) is not None}
    for pid in running.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for name in running:
        node = cluster.nodes[name]
        while node.raftpg_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = node.raftpg_pid()
        if pid is not None:
            logger.warning("%s's raftpg (pid %d) ignored SIGTERM for %.0fs; killing it", name, pid, STOP_TIMEOUT)
            cluster.kill_node(name)
    cluster.stop()
    cluster.remove()


def cmd_ready() -> int:
    cluster = attach()
    try:
        cluster.wait_healthy(timeout=0)
    except TimeoutError:
        return 1
    running = sum(1 for node in cluster.nodes.values() if node.raftpg_pid() is not None)
    return 0 if running == len(cluster.nodes) else 1


def cmd_primary() -> int:
    name = attach().primary()
    if name is None:
        print("no single primary", file=sys.stderr)
        return 1
    print(name)
    return 0


def cmd_kill_node(name: str) -> None:
    print(f"event_wall={attach().kill_node(name):.6f}")


def cmd_start_node(name: str) -> None:
    attach().start_node(name)


def cmd_switchover() -> int:
    cluster = attach()
    old = cluster.primary()
    if old is None:
        print("no single primary to switch over from", file=sys.stderr)
        return 1
    status, body = cluster.api_request(old, "POST", "/switchover", {"leader": old}, timeout=SWITCHOVER_TIMEOUT)
    print(f"POST /switchover on {old}: HTTP {status} {body}", file=sys.stderr)
    if status != 200:
        return 1
    new = cluster.wait_primary(NEW_PRIMARY_TIMEOUT, exclude=old)
    print(f"{old} -> {new}", file=sys.stderr)
    return 0


def cmd_dsn() -> None:
    print(attach().dsn_any_primary())


def cmd_rest_url() -> int:
    cluster = attach()
    name = cluster.primary()
    if name is None:
        print("no single primary", file=sys.stderr)
        return 1
    print(f"{cluster.nodes[name].api_url}/primary")
    return 0


def cmd_pids() -> None:
    for node in attach().nodes.values():
        raftpg_pid, postmaster_pid, fence_pid = node.raftpg_pid(), node.postmaster_pid(), node.fence_pid()
        if raftpg_pid is not None:
            print(f"raftpg-{node.name} {raftpg_pid}")
        if postmaster_pid is not None:
            print(f"postgres-{node.name} {postmaster_pid} tree")
        if fence_pid is not None:
            print(f"fence-{node.name} {fence_pid}")


def cmd_info() -> None:
    cluster = attach()
    primary = cluster.primary()
    effective: object = None
    if primary is not None:
        effective = cluster.api_get(primary, "/config")[1]
    with psycopg.connect(cluster.dsn_any_primary(), autocommit=True) as conn:
        row = conn.execute("SELECT version()").fetchone()
    print(json.dumps({
        "manager": f"raftpg {raftpg.__version__}", "dcs": "embedded Raft (pysyncobj)",
        "postgres": row[0] if row else None, "psycopg": psycopg.__version__, "python": sys.version.split()[0],
        "requested": settings(), "parameters": dict(cluster.parameters),
        "pg_ports": [node.ports.pg for node in cluster.nodes.values()], "effective_dynamic_config": effective,
    }))


COMMANDS: dict[str, Callable[[], int | None]] = {
    "start": cmd_start, "stop": cmd_stop, "ready": cmd_ready, "primary": cmd_primary,
    "switchover": cmd_switchover, "dsn": cmd_dsn, "rest-url": cmd_rest_url, "pids": cmd_pids, "info": cmd_info,
}
NODE_COMMANDS: dict[str, Callable[[str], None]] = {"kill-node": cmd_kill_node, "start-node": cmd_start_node}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    if len(argv) == 1 and argv[0] in COMMANDS:
        return COMMANDS[argv[0]]() or 0
    if len(argv) == 2 and argv[0] in NODE_COMMANDS:
        NODE_COMMANDS[argv[0]](argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    print(f"usage: raftpg_adapter.py {{{'|'.join([*COMMANDS, *NODE_COMMANDS])}}} [NODE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
