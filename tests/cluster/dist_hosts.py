"""Three network-namespace hosts provisioned by packaging/provision.sh and run from the built dist/raftpg.

Everything a VM would do except apt and systemd: the script installs the binary, writes node.yml
with `raftpg config init` and the systemd unit; the test then starts `raftpg run` as postgres with
a clean environment (no venv on PATH, no checkout on sys.path, cwd outside the checkout) and a
$NOTIFY_SOCKET of its own per host, standing in for systemd's.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftpg.poll import wait_for, wait_until
from tests.cluster.netns import NetnsHosts

CHECKOUT = Path(__file__).resolve().parents[2]
PROVISION = CHECKOUT / "packaging" / "provision.sh"
OS_USER = "postgres"
API_PORT = 8008
PG_PORT = 5432
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What a service manager gives a unit: no PYTHONPATH, no venv, a system PATH."""
    return {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": str(home), **extra}


@dataclass
class DistHost:
    index: int
    address: str
    root: Path
    process: subprocess.Popen[bytes] | None = None
    notify: socket.socket | None = None

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "raftpg"

    @property
    def config(self) -> Path:
        return self.root / "etc" / "node.yml"

    @property
    def unit(self) -> Path:
        return self.root / "systemd" / "raftpg.service"

    @property
    def data_dir(self) -> Path:
        return self.root / "pg" / "data"

    @property
    def raft_dir(self) -> Path:
        return self.root / "raft" / "journal"

    @property
    def log(self) -> Path:
        return self.root / "raftpg.log"

    @property
    def notify_path(self) -> Path:
        return self.root / "notify.sock"

    def api(self, path: str, timeout: float = 1.0) -> tuple[int, Any]:
        """(HTTP status, JSON body); (0, None) when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://{self.address}:{API_PORT}{path}", timeout=timeout) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (OSError, ValueError):
            return 0, None

    def notifications(self) -> list[str]:
        """Every datagram the node sent to its $NOTIFY_SOCKET so far (non-blocking)."""
        found: list[str] = []
        if self.notify is None:
            return found
        while True:
            try:
                found.append(self.notify.recv(4096).decode())
            except BlockingIOError:
                return found


@dataclass
class DistCluster:
    binary: Path
    base: Path
    net: NetnsHosts = field(default_factory=lambda: NetnsHosts(3))
    hosts: list[DistHost] = field(default_factory=list)

    def create(self) -> None:
        self.net.create()
        for index in range(1, self.net.count + 1):
            root = self.base / f"host{index}"
            root.mkdir(mode=0o755)
            self.hosts.append(DistHost(index, self.net.address(index), root))

    def provision(self, secrets: Path) -> list[str]:
        """Run the provision script for every host as root, as Vagrant would; returns their output."""
        outputs = []
        for host in self.hosts:
            peers = ",".join(other.address for other in self.hosts if other is not host)
            argv = ["bash", str(PROVISION), "--no-apt", "--no-systemd", "--scope", "dist", "--name", host.name,
                    "--self", host.address, "--peers", peers, "--secrets", str(secrets),
                    "--binary", str(self.binary), "--prefix", str(host.binary.parent),
                    "--config", str(host.config), "--unit-dir", str(host.unit.parent),
                    "--data-dir", str(host.data_dir), "--raft-dir", str(host.raft_dir),
                    "--socket-dir", str(host.root / "run"), "--ttl", "5"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.base,
                                  env=clean_env(self.base), check=False)
            if done.returncode != 0:
                raise AssertionError(f"provision {host.name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
            outputs.append(done.stdout)
        return outputs

    def start(self, host: DistHost) -> None:
        """`raftpg run` from the installed binary, inside the host's namespace, as postgres."""
        if host.notify is None:
            host.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            host.notify.bind(str(host.notify_path))
            host.notify.setblocking(False)
            host.notify_path.chmod(0o666)
        entry = pwd.getpwnam(OS_USER)
        with host.log.open("ab") as log:
            host.process = subprocess.Popen(
                [*self.net.exec_prefix(host.index, OS_USER), str(host.binary), "run", "-c", str(host.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=host.root, env=clean_env(Path(entry.pw_dir), NOTIFY_SOCKET=str(host.notify_path)),
            )

    def crash(self, host: DistHost) -> None:
        """kill -9 of the whole host: every process in its namespace (raftpg, fence, PostgreSQL)."""
        for pid in self.namespace_pids(host):
            with contextlib.suppress(ProcessLookupError):  # a backend may exit on its own meanwhile
                os.kill(pid, signal.SIGKILL)
        if host.process is not None:
            host.process.wait(timeout=10)
        wait_until(lambda: not self.namespace_pids(host), 10)

    def namespace_pids(self, host: DistHost) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.net.namespace(host.index)], capture_output=True,
                              text=True, timeout=10, check=False)
        return [int(word) for word in done.stdout.split()]

    def stop(self) -> None:
        """SIGTERM each raftpg (it stops PostgreSQL), then SIGKILL whatever is left, by PID."""
        for host in self.hosts:
            if host.process is not None and host.process.poll() is None:
                host.process.send_signal(signal.SIGTERM)
        for host in self.hosts:
            if host.process is not None:
                try:
                    host.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    host.process.kill()
                    host.process.wait(timeout=10)
            if self.net.active:
                for pid in self.namespace_pids(host):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if host.notify is not None:
                host.notify.close()
        self.net.destroy()

    def start_stopped(self) -> DistCluster:
        for host in self.hosts:
            if host.process is None or host.process.poll() is not None:
                self.start(host)
        return self

    def wait_healthy(self, timeout: float) -> DistHost:
        """One primary, every other host streaming from it; a node that exits fails at once."""

        def probe() -> DistHost | None:
            for host in self.hosts:
                if host.process is not None and host.process.poll() is not None:
                    raise AssertionError(f"{host.name} exited {host.process.returncode}\n{self.logs()}")
            primaries = self.primaries()
            if len(primaries) != 1:
                return None
            others = {h.name for h in self.hosts if h is not primaries[0]}
            return primaries[0] if self.streaming(primaries[0]) >= others else None

        return wait_for(probe, timeout, "one primary from dist/raftpg with two streaming replicas")

    def primaries(self) -> list[DistHost]:
        return [host for host in self.hosts if host.api("/primary")[0] == 200]

    def streaming(self, primary: DistHost) -> set[str]:
        status, body = primary.api("/patroni")
        if status != 200 or not isinstance(body, dict):
            return set()
        return {str(r.get("application_name")) for r in body.get("replication") or [] if r.get("state") == "streaming"}

    def logs(self) -> str:
        parts = []
        for host in self.hosts:
            tail = host.log.read_text(errors="replace").splitlines()[-40:] if host.log.exists() else []
            parts.append(f"--- {host.name} ---\n" + "\n".join(tail))
        return "\n".join(parts)


def rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (PyInstaller's onefile is two processes)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending += [int(child) for child in children]
    return total
