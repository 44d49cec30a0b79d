"""One node of a local cluster: its ports, files and the PIDs of its raftpg, postmaster and fence."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from raftpg.fence.client import FenceClient
from raftpg.procfs import process_alive, process_cmdline


@dataclass
class NodePorts:
    raft: int
    api: int
    pg: int


@dataclass
class Node:
    name: str
    ports: NodePorts
    config_path: Path
    log_path: Path
    data_dir: Path
    raft_dir: Path
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    tls: bool = False
    witness: bool = False  # a Raft vote and a REST API, no PostgreSQL (its pg port stays unused)

    @property
    def api_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.ports.api}"

    @property
    def tls_dir(self) -> Path:
        return self.config_path.parent / "tls"

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if process_alive(pid) else None

    def fence_pid(self) -> int | None:
        """The fence guarding this node's postmaster, if one runs (its pid file is JSON, and a
        recorded PID counts only while that process is still a fence for this run directory)."""
        return FenceClient(self.raft_dir).pid()

    @property
    def pid_file(self) -> Path:
        return self.config_path.parent / "raftpg.pid"

    def raftpg_pid(self) -> int | None:
        """The raftpg process: our child if we started it, else the one recorded by another launcher."""
        if self.process is None:
            return self._recorded_raftpg_pid()
        if self.process.poll() is not None:
            return None
        return self.process.pid

    def _recorded_raftpg_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        running_raftpg = any("raftpg" in part for part in process_cmdline(pid))
        return pid if running_raftpg and process_alive(pid) else None
