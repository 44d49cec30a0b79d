"""`raftpg demo`: a real 3-node cluster on loopback for a newcomer, stopped cleanly on Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from raftpg.devcluster import LocalCluster
from raftpg.devcluster.run_as import check_runnable

CLUSTER_USER = "postgres"


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run a local 3-node cluster on loopback (Ctrl-C stops it)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put it (default: a temporary directory)")
    parser.add_argument("--ttl", type=float, default=5.0, help="lease ttl in seconds")
    parser.add_argument("--synchronous-mode", default="quorum", choices=["off", "on", "quorum"],
                        help="synchronous replication mode of the demo cluster (default: quorum, safe)")
    parser.add_argument("--timeout", type=float, default=120.0, help="how long to wait for the cluster")
    parser.add_argument("--witness", action="store_true",
                        help="two PostgreSQL members and one witness (a Raft vote, no PostgreSQL) instead of three")
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    console = Console()
    if os.geteuid() == 0:
        problem = check_runnable(CLUSTER_USER)
        if problem is not None:
            Console(stderr=True, soft_wrap=True).print(Text(f"raftpg demo: {problem}", style="red"))
            return 1
    tls = bool(getattr(args, "tls", False))
    base = args.dir or Path(tempfile.mkdtemp(prefix="raftpg-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    witness = bool(args.witness)
    cluster = LocalCluster(base_dir=base, size=2 if witness else 3, witnesses=1 if witness else 0, ttl=args.ttl,
                           loop_wait=1, retry_timeout=max(1.0, args.ttl / 4),
                           synchronous_mode=args.synchronous_mode, tls=tls)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with console.status("starting 3 nodes (initdb, Raft, replicas)..."):
            cluster.start()
            primary = cluster.wait_healthy(args.timeout)
        table = Table(title=f"raftpg demo cluster '{cluster.scope}' in {base}")
        for column in ("Member", "Role", "PostgreSQL", "REST API", "Raft", "Config"):
            table.add_column(column)
        for name, node in cluster.nodes.items():
            role = "witness" if node.witness else "primary" if name == primary else "replica"
            table.add_row(name, role, "-" if node.witness else f"127.0.0.1:{node.ports.pg}",
                          node.api_url, f"127.0.0.1:{node.ports.raft}", str(node.config_path))
        console.print(table)
        any_config = next(iter(cluster.nodes.values())).config_path
        console.print("\nConnect to the primary (any node's port works with target_session_attrs):")
        console.print(f"  psql '{cluster.dsn_any_primary()}'")
        console.print("\nTry:")
        for example in ("list", "history", "switchover --force", "pause", "resume"):
            console.print(f"  raftpg ctl -c {any_config} {example}")
        if tls:
            console.print(f"\nThe REST APIs require client certificates from the demo CA ({cluster.ca_dir}); "
                          "ctl -c NODE.yml uses that node's certificate.")
        console.print(f"\nLogs: {base}/*/raftpg.log. Press Ctrl-C to stop everything.")
        stop.wait()
    except TimeoutError as exc:
        console.print(f"[red]the demo cluster did not come up: {exc}; logs are in {base}[/red]")
        return 1
    finally:
        with console.status("stopping the demo cluster..."):
            cluster.stop()
    console.print("stopped.")
    return 0
