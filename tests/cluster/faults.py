"""Fault injection for cluster tests and the chaos runner: FaultCluster (a LocalCluster that kills
one process of a node, and cuts a node off the network when its nodes run in network namespaces),
freezing PostgreSQL, power loss, port-level partitions inside network namespaces (nftables), a full
Raft file system (tmpfs). Root only; every process touched is addressed by PID.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from raftpg.devcluster import LocalCluster
from raftpg.procfs import children_of
from tests.cluster.netns import NetnsHosts

NFT_TABLE = "raftpg_chaos"
COMMAND_TIMEOUT = 10.0
RAFT_TMPFS_SIZE = "320m"  # above raftpg's 256 MiB step-down threshold, so only a filled one is "full"
FILLER_NAME = "chaos-filler"


class FaultUnavailable(RuntimeError):
    """This machine cannot inject the fault (a tool or privilege is missing)."""


@dataclass
class FaultCluster(LocalCluster):
    """A LocalCluster for fault tests; with `netns=True` (root) each node runs in its own network
    namespace on a private bridge, so that `cut()` can partition it and `heal()` reconnect it."""

    netns: bool = False

    def __post_init__(self) -> None:
        if self.netns:
            self.network = NetnsHosts(self.size + self.witnesses)
        super().__post_init__()

    def kill_raftpg(self, name: str, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[name]
        pid = node.raftpg_pid()
        if pid is None:
            raise RuntimeError(f"{name}'s raftpg is not running")
        os.kill(pid, sig)
        if sig == signal.SIGKILL and node.process is not None:
            node.process.wait(timeout=10)

    def kill_postmaster(self, name: str) -> None:
        pid = self.nodes[name].postmaster_pid()
        if pid is None:
            raise RuntimeError(f"{name}'s postmaster is not running")
        os.kill(pid, signal.SIGKILL)

    def cut(self, name: str) -> None:
        """Partition one node from every other node and from this process (netns clusters only)."""
        self._namespaces().cut(self._index(name))

    def heal(self, name: str) -> None:
        self._namespaces().heal(self._index(name))

    def netns_exec(self, name: str) -> list[str]:
        """argv prefix that runs a command as root inside a node's namespace, e.g. a client that must
        keep reaching that node while it is cut off."""
        return self._namespaces().exec_prefix(self._index(name), user=None)

    def _namespaces(self) -> NetnsHosts:
        if not isinstance(self.network, NetnsHosts) or not self.network.active:
            raise RuntimeError("cut/heal need a running FaultCluster(netns=True)")
        return self.network


def freeze_postgres(cluster: LocalCluster, name: str) -> list[int]:
    """SIGSTOP a node's postmaster, then every child it has (raftpg and the fence keep running).
    The postmaster first, so it forks nothing new meanwhile. Returns the stopped PIDs."""
    postmaster = cluster.nodes[name].postmaster_pid()
    if postmaster is None:
        raise RuntimeError(f"{name}'s postmaster is not running")
    os.kill(postmaster, signal.SIGSTOP)
    stopped = [postmaster]
    for child in children_of(postmaster):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGSTOP)
            stopped.append(child)
    return stopped


def thaw(pids: Iterable[int]) -> None:
    """SIGCONT in reverse order: children before the postmaster that would otherwise see them frozen."""
    for pid in reversed(list(pids)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def node_pids(cluster: LocalCluster, name: str) -> list[int]:
    node = cluster.nodes[name]
    return [p for p in (node.raftpg_pid(), node.postmaster_pid(), node.fence_pid()) if p]


def power_loss(cluster: LocalCluster) -> float:
    """kill -9 of every process of every node at once: all are SIGSTOPped first (nothing runs
    between the first and the last kill), then killed node by node. Returns the wall time."""
    for name in cluster.nodes:
        for pid in node_pids(cluster, name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
    killed_at = time.time()
    for name in cluster.nodes:
        cluster.kill_node(name)
    return killed_at


def postmaster_replaced(cluster: LocalCluster, name: str, old_pid: int | None) -> bool:
    """After a postmaster crash on `name`: a new postmaster runs there, or another member is primary.
    (A commit acknowledged before either can still come from a backend of the dead postmaster.)"""
    if cluster.nodes[name].postmaster_pid() not in (None, old_pid):
        return True
    return cluster.primary() not in (None, name)


def system_identifier(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    if row is None:
        raise RuntimeError("pg_control_system() returned no row")
    return int(row[0])


def _run(argv: list[str], stdin: str | None = None) -> None:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FaultUnavailable(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")


def check_nft() -> None:
    if shutil.which("nft") is None:
        raise FaultUnavailable("port-level partitions need nft (Debian package nftables)")


def block_ports(cluster: FaultCluster, name: str, ports: Iterable[int]) -> None:
    """Inside `name`'s namespace, drop TCP between it and the other members on `ports` (either end),
    both ways. Clients from the bridge address (the checker) still get through."""
    check_nft()
    peers = ", ".join(n.host for other, n in cluster.nodes.items() if other != name)
    port_set = ", ".join(str(p) for p in sorted(set(ports)))
    rules = f"""table inet {NFT_TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip saddr {{ {peers} }} tcp dport {{ {port_set} }} drop
    ip saddr {{ {peers} }} tcp sport {{ {port_set} }} drop
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    ip daddr {{ {peers} }} tcp dport {{ {port_set} }} drop
    ip daddr {{ {peers} }} tcp sport {{ {port_set} }} drop
  }}
}}
"""
    _run([*cluster.netns_exec(name), "nft", "-f", "-"], stdin=rules)


def unblock_ports(cluster: FaultCluster, name: str) -> None:
    """Remove block_ports' table; absent is fine."""
    with contextlib.suppress(RuntimeError):
        _run([*cluster.netns_exec(name), "nft", "delete", "table", "inet", NFT_TABLE])


def raft_ports(cluster: LocalCluster) -> list[int]:
    return [n.ports.raft for n in cluster.nodes.values()]


def pg_ports(cluster: LocalCluster) -> list[int]:
    return [n.ports.pg for n in cluster.nodes.values()]


class RaftDisks:
    """A small tmpfs under each node's Raft directory (mounted before the nodes start), so one can
    be filled to ENOSPC and emptied again."""

    def __init__(self, cluster: LocalCluster, size: str = RAFT_TMPFS_SIZE) -> None:
        self.cluster = cluster
        self.size = size
        self.mounted: list[Path] = []

    def mount(self) -> None:
        if os.geteuid() != 0:
            raise FaultUnavailable("mounting a tmpfs needs root")
        owner = pwd.getpwnam(self.cluster.os_user or "root")
        for node in self.cluster.nodes.values():
            node.raft_dir.mkdir(parents=True, exist_ok=True)
            _run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700,uid={owner.pw_uid},gid={owner.pw_gid}",
                  "tmpfs", str(node.raft_dir)])
            self.mounted.append(node.raft_dir)

    def fill(self, name: str) -> int:
        """Write a file until the node's Raft file system is full; returns its size in bytes."""
        path = self.cluster.nodes[name].raft_dir / FILLER_NAME
        written = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 4096, 1):  # big blocks, then whatever the last one left free
                with contextlib.suppress(OSError):
                    while True:
                        count = os.write(fd, b"\0" * size)
                        if count == 0:
                            break
                        written += count
        finally:
            os.close(fd)
        return written

    def free(self, name: str) -> None:
        (self.cluster.nodes[name].raft_dir / FILLER_NAME).unlink(missing_ok=True)

    def unmount(self) -> None:
        """After the cluster is stopped: lazily unmount every tmpfs (the data goes with it)."""
        for path in self.mounted:
            with contextlib.suppress(RuntimeError, FaultUnavailable):
                _run(["umount", "--lazy", str(path)])
        self.mounted.clear()
