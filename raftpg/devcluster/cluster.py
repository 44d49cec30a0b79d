"""N raftpg nodes on loopback: the one launcher behind the cluster tests, `raftpg demo` and the
benchmark adapter.

Every process it starts is recorded by PID and stopped by PID. Run as root, it starts the nodes as
an unprivileged OS user (PostgreSQL refuses root) in directories that user owns. Given a
HostNetwork, each node instead runs on its own host of it (the tests' network namespaces, which
they can cut off and heal).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from psycopg.conninfo import make_conninfo

from raftpg.cli.certs import CA_CERT_FILE, write_ca, write_node_cert
from raftpg.cli.self_exec import independent_environment, raftpg_command
from raftpg.config import Auth, generate_raft_password
from raftpg.devcluster.node import Node, NodePorts
from raftpg.devcluster.ports import free_ports
from raftpg.fence.kill import kill_postmaster_tree
from raftpg.http.client import HttpClient, HttpFailure, TlsFiles
from raftpg.poll import wait_for, wait_until
from raftpg.postgres.binaries import discover_bin_dir

TEST_PARAMETERS = {
    "fsync": "off",
    "synchronous_commit": "on",
    "shared_buffers": "16MB",
    "max_connections": "50",
    "wal_writer_delay": "10ms",
    "checkpoint_timeout": "30s",
}


class HostNetwork(Protocol):
    """Hosts numbered from 1, one per node, each with its own address (not loopback)."""

    client_options: str  # libpq options every client of such a host needs

    def create(self) -> None: ...

    def destroy(self) -> None: ...

    def address(self, index: int) -> str: ...

    def ports(self, index: int) -> NodePorts: ...

    def exec_prefix(self, index: int, user: str | None) -> list[str]:
        """argv prefix that runs a program on host `index` as `user` (None: as we are)."""
        ...


@dataclass
class LocalCluster:
    base_dir: Path
    size: int = 3
    witnesses: int = 0  # witness members (witness1...) besides the `size` database members
    scope: str = "demo"
    ttl: float = 5
    loop_wait: float = 1
    retry_timeout: float = 2
    synchronous_mode: str = "off"
    parameters: Mapping[str, str] = field(default_factory=lambda: dict(TEST_PARAMETERS))
    dcs_extra: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    password: str = field(default_factory=generate_raft_password)
    api_auth: tuple[str, str] = ("admin", "admin-password")
    os_user: str | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    tls: bool = False
    network: HostNetwork | None = None
    _http: HttpClient | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.os_user is None and os.geteuid() == 0:
            self.os_user = "postgres"
        if self.tls:
            self._ensure_ca(self.ca_dir)
        if self.network is not None:
            self.network.create()
        try:
            self._create_nodes()
        except BaseException:
            if self.network is not None:
                self.network.destroy()
            raise

    def _create_nodes(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.base_dir)
        ports = free_ports((self.size + self.witnesses) * 3) if self.network is None else []
        for i in range(self.size + self.witnesses):
            name = f"node{i + 1}" if i < self.size else f"witness{i + 1 - self.size}"
            node_dir = self.base_dir / name
            node_dir.mkdir(exist_ok=True)
            self._chown(node_dir)
            if self.network is None:
                host, node_ports = "127.0.0.1", NodePorts(raft=ports[3 * i], api=ports[3 * i + 1], pg=ports[3 * i + 2])
            else:
                host, node_ports = self.network.address(i + 1), self.network.ports(i + 1)
            self.nodes[name] = Node(
                name=name,
                ports=node_ports,
                config_path=node_dir / "node.yml",
                log_path=node_dir / "raftpg.log",
                data_dir=node_dir / "pgdata",
                raft_dir=node_dir / "raft",
                host=host,
                tls=self.tls,
                witness=i >= self.size,
            )
        for node in self.nodes.values():
            if self.tls:
                self.issue_node_cert(node.name)
            self.write_config(node)

    def add_node(self) -> Node:
        """Configure one more loopback node for a running cluster (not started, not yet a Raft voter:
        `raftpg ctl members add` its raft_addr first). Its partners are every node already here."""
        if self.network is not None:
            raise RuntimeError("add_node supports loopback clusters only")
        name = f"node{len(self.nodes) + 1}"
        while name in self.nodes:
            name += "x"
        ports = free_ports(3)
        node_dir = self.base_dir / name
        node_dir.mkdir(exist_ok=True)
        self._chown(node_dir)
        node = Node(name=name, ports=NodePorts(raft=ports[0], api=ports[1], pg=ports[2]),
                    config_path=node_dir / "node.yml", log_path=node_dir / "raftpg.log",
                    data_dir=node_dir / "pgdata", raft_dir=node_dir / "raft", host="127.0.0.1", tls=self.tls)
        self.nodes[name] = node
        self.size = len(self.databases())
        if self.tls:
            self.issue_node_cert(name)
        self.write_config(node)
        return node

    def databases(self) -> dict[str, Node]:
        """The members that run PostgreSQL (every node but the witnesses)."""
        return {name: node for name, node in self.nodes.items() if not node.witness}

    @staticmethod
    def raft_addr(node: Node) -> str:
        return f"{node.host}:{node.ports.raft}"

    # --- TLS ---------------------------------------------------------------------------------
    @property
    def ca_dir(self) -> Path:
        return self.base_dir / "tls" / "ca"

    def _ensure_ca(self, directory: Path) -> None:
        if not (directory / CA_CERT_FILE).exists():
            write_ca(directory, f"raftpg {self.scope} test CA ({directory.name})")

    def issue_node_cert(self, name: str, *, foreign: bool = False) -> None:
        """(Re)write a node's certificate and the cluster CA, owned by the node's OS user. A
        `foreign` certificate is signed by another CA: the node still trusts its peers, they
        cannot trust it (for tests of how members report that). Takes effect at its next start."""
        node = self.nodes[name]
        ca_dir = self.ca_dir
        if foreign:
            ca_dir = self.base_dir / "tls" / "foreign-ca"
            self._ensure_ca(ca_dir)
        files = write_node_cert(ca_dir, node.tls_dir, node.name, [node.host])
        shutil.copyfile(self.ca_dir / CA_CERT_FILE, files.ca_cert)
        for path in (node.tls_dir, files.cert, files.key, files.ca_cert):
            self._chown(path)

    def _client_tls(self) -> TlsFiles | None:
        """The launcher's own client certificate, signed by the cluster CA."""
        if not self.tls:
            return None
        directory = self.base_dir / "tls" / "launcher"
        cert, key = directory / "launcher.crt", directory / "launcher.key"
        if not cert.exists():
            write_node_cert(self.ca_dir, directory, "launcher", ["127.0.0.1"])
        return TlsFiles(cafile=self.ca_dir / CA_CERT_FILE, certfile=cert, keyfile=key)

    @property
    def http(self) -> HttpClient:
        """The launcher's client: the one raftpg HTTP client, with the API credentials."""
        if self._http is None:
            self._http = HttpClient(self._client_tls(), Auth(*self.api_auth))
        return self._http

    # --- configuration -----------------------------------------------------------------------
    def dcs(self) -> dict[str, Any]:
        return {
            "ttl": self.ttl,
            "loop_wait": self.loop_wait,
            "retry_timeout": self.retry_timeout,
            "maximum_lag_on_failover": 16 * 1024 * 1024,
            "primary_start_timeout": 10,
            "synchronous_mode": self.synchronous_mode,
            "postgresql": {"parameters": dict(self.parameters), "use_pg_rewind": True},
            **self.dcs_extra,
        }

    def restapi_config(self, node: Node) -> dict[str, Any]:
        restapi: dict[str, Any] = {
            "listen": f"{node.host}:{node.ports.api}",
            "connect_address": f"{node.host}:{node.ports.api}",
            "authentication": {"username": self.api_auth[0], "password": self.api_auth[1]},
        }
        if self.tls:
            restapi.update({
                "certfile": str(node.tls_dir / f"{node.name}.crt"),
                "keyfile": str(node.tls_dir / f"{node.name}.key"),
                "cafile": str(node.tls_dir / CA_CERT_FILE),
                "verify_client": "required",
            })
        return restapi

    def node_config(self, node: Node) -> dict[str, Any]:
        config = self._database_config(node)
        if node.witness:
            del config["postgresql"], config["tags"], config["bootstrap"]["initdb"]
            config["witness"] = True
        return config

    def _database_config(self, node: Node) -> dict[str, Any]:
        bin_dir = discover_bin_dir()
        return {
            "scope": self.scope,
            "name": node.name,
            "raft": {
                "self_addr": f"{node.host}:{node.ports.raft}",
                "partner_addrs": [f"{n.host}:{n.ports.raft}" for n in self.nodes.values() if n is not node],
                "data_dir": str(node.raft_dir),
                "password": self.password,
            },
            "restapi": self.restapi_config(node),
            "postgresql": {
                "listen": f"{node.host}:{node.ports.pg}",
                "connect_address": f"{node.host}:{node.ports.pg}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(bin_dir) if bin_dir else None,
                "socket_dir": str(node.data_dir.parent),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "postgres-secret"},
                    "replication": {"username": "replicator", "password": "replicator-secret"},
                },
            },
            "bootstrap": {"dcs": self.dcs(), "initdb": [{"encoding": "UTF8"}]},
            "tags": dict(self.tags.get(node.name, {})),
            "log": {"level": "INFO", "format": "plain"},
        }

    def write_config(self, node: Node) -> None:
        node.config_path.write_text(yaml.safe_dump(self.node_config(node), sort_keys=False))
        node.config_path.chmod(0o600)
        self._chown(node.config_path)

    def _chown(self, path: Path) -> None:
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    # --- processes ---------------------------------------------------------------------------
    def start(self) -> None:
        for name in self.nodes:
            self.start_node(name)

    def start_node(self, name: str, extra_args: Sequence[str] = ()) -> None:
        node = self.nodes[name]
        if node.raftpg_pid() is not None:
            raise RuntimeError(f"{name} is already running")
        log = node.log_path.open("ab")
        self._chown(node.log_path)
        env = _node_environment()
        env["PYTHONUNBUFFERED"] = "1"
        argv = [*raftpg_command(), "run", "-c", str(node.config_path), *extra_args]
        try:
            if self.network is None:
                node.process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    user=self.os_user, group=self._group(), start_new_session=True, cwd=str(self.base_dir),
                )
            else:
                # setns needs root, so the prefix drops to os_user itself (after entering the namespace).
                self.network.create()
                node.process = subprocess.Popen(
                    [*self.network.exec_prefix(self._index(name), self.os_user), *argv],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True, cwd=str(self.base_dir),
                )
        finally:
            log.close()
        node.pid_file.write_text(f"{node.process.pid}\n")

    def _index(self, name: str) -> int:
        """1-based position of a node: its namespace host number."""
        return list(self.nodes).index(name) + 1

    def _group(self) -> int | None:
        return pwd.getpwnam(self.os_user).pw_gid if self.os_user else None

    def rejoin(self, name: str) -> str:
        """`raftpg rejoin` for a stopped node, as the node's OS user; returns what it printed."""
        node = self.nodes[name]
        argv = [*raftpg_command(), "rejoin", "-c", str(node.config_path)]
        env = _node_environment()
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60,
                              user=self.os_user, group=self._group(), cwd=str(self.base_dir), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"raftpg rejoin for {name} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def kill_node(self, name: str) -> float:
        """SIGKILL raftpg, the postmaster with all its backends, and the fence. Returns the wall time."""
        node = self.nodes[name]
        pids = [p for p in (node.raftpg_pid(), node.postmaster_pid(), node.fence_pid()) if p]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        killed_at = time.time()
        postmaster = node.postmaster_pid()
        if postmaster is not None:
            # Backends are their own process groups (PostgreSQL setsid()s every child): kill the tree.
            kill_postmaster_tree(postmaster)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if node.process is not None:
            node.process.wait(timeout=10)
        wait_until(lambda: node.postmaster_pid() is None, 10)
        return killed_at

    def stop_node(self, name: str, timeout: float = 60) -> int | None:
        node = self.nodes[name]
        if node.process is None or node.process.poll() is not None:
            return None
        node.process.send_signal(signal.SIGTERM)
        try:
            return node.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_node(name)
            return None

    def stop(self) -> None:
        """Stop everything this launcher started, by PID: raftpg, then leftovers (fence, postmaster);
        then remove the namespace hosts, if any (start() builds them again)."""
        try:
            self._stop_processes()
        finally:
            if self.network is not None:
                self.network.destroy()

    def _stop_processes(self) -> None:
        # The primary first, alone: it hands over to a replica that is still up (a second, not a
        # round of Raft timeouts against members that are stopping too).
        primary = self.primary()
        if primary is not None:
            self.stop_node(primary, timeout=30)
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGCONT)
                    node.process.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            if node.process is not None:
                try:
                    node.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)
        for node in self.nodes.values():
            fence = node.fence_pid()
            if fence:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(fence, signal.SIGKILL)
            postmaster = node.postmaster_pid()
            if postmaster:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(postmaster, signal.SIGKILL)
                wait_until(lambda n=node: n.postmaster_pid() is None, 10)  # type: ignore[misc]

    def remove(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # --- observation -------------------------------------------------------------------------
    def api_get(self, name: str, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        """(HTTP status, body); (0, None) when the node gives no answer."""
        return self.api_request(name, "GET", path, timeout=timeout)

    def api_request(self, name: str, method: str, path: str, body: Any = None,
                    timeout: float = 30.0) -> tuple[int, Any]:
        try:
            answer = self.http.request_blocking(method, self.nodes[name].api_url + path, body, timeout=timeout)
        except HttpFailure:
            return 0, None
        return answer.status, answer.body

    def primaries(self) -> list[str]:
        """Members whose /primary says 200 right now."""
        return [name for name in self.databases() if self.api_get(name, "/primary", timeout=1.0)[0] == 200]

    def primary(self) -> str | None:
        found = self.primaries()
        return found[0] if len(found) == 1 else None

    def wait_primary(self, timeout: float, exclude: str | None = None) -> str:
        def probe() -> str | None:
            self.check_no_startup_failure()
            name = self.primary()
            return name if name is not None and name != exclude else None

        return wait_for(probe, timeout, f"a single primary{f' other than {exclude}' if exclude else ''}")

    def streaming_replicas(self, primary: str) -> set[str]:
        status, body = self.api_get(primary, "/patroni")
        if status != 200 or not isinstance(body, dict):
            return set()
        return {r.get("application_name") for r in body.get("replication") or []
                if r.get("state") == "streaming"}

    def check_no_startup_failure(self) -> None:
        """Raise at once, with its log, if a node we started exited with an error (a config or
        start-up problem) instead of letting a wait for the cluster run into its timeout."""
        for name, node in self.nodes.items():
            code = node.process.poll() if node.process is not None else None
            if code in (1, 2):
                tail = "\n".join(node.log_path.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"{name}'s raftpg exited with code {code}:\n{tail}")

    def wait_healthy(self, timeout: float) -> str:
        """One primary and every other running database member streaming from it (a witness has
        nothing to stream)."""
        def probe() -> str | None:
            self.check_no_startup_failure()
            primary = self.primary()
            if primary is None:
                return None
            running = {n for n, node in self.databases().items() if node.raftpg_pid() is not None and n != primary}
            if not running <= self.streaming_replicas(primary):
                return None
            replicas_ok = all(self.api_get(name, "/replica", timeout=1.0)[0] == 200 for name in running)
            return primary if replicas_ok else None

        return wait_for(probe, timeout, "a primary with all running members streaming")

    def dsn(self, name: str, dbname: str = "postgres") -> str:
        node = self.nodes[name]
        return make_conninfo(self._client_options(), host=node.host, port=node.ports.pg, user="postgres",
                             password="postgres-secret", dbname=dbname, connect_timeout=2)

    def dsn_any_primary(self) -> str:
        hosts = ",".join(n.host for n in self.databases().values())
        ports = ",".join(str(n.ports.pg) for n in self.databases().values())
        return make_conninfo(self._client_options(), host=hosts, port=ports, user="postgres",
                             password="postgres-secret", dbname="postgres", connect_timeout=2,
                             target_session_attrs="read-write")

    def _client_options(self) -> str:
        return "" if self.network is None else self.network.client_options

    def pids(self) -> Iterator[tuple[str, int]]:
        for node in self.nodes.values():
            for label, pid in (("raftpg", node.raftpg_pid()), ("postgres", node.postmaster_pid()),
                               ("fence", node.fence_pid())):
                if pid:
                    yield f"{node.name}-{label}", pid


def _node_environment() -> dict[str, str]:
    """A node's environment: ours without RAFTPG_* overrides, and (frozen) not tied to our unpacked files."""
    return independent_environment({k: v for k, v in os.environ.items() if not k.startswith("RAFTPG_")})
