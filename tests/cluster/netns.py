"""Network-namespace hosts for the local cluster (a raftpg.devcluster HostNetwork), so a test can cut
one node off the network.

Loopback ports cannot be partitioned; a namespace per node joined to a bridge by a veth pair can:
setting the host-side veth down isolates that node (it still reaches itself), setting it up heals
it. Root only. Addresses come from 10.213.0.0/16, a private range kept for these test hosts: the
bridge is 10.213.K.1 in the root namespace, host i (from 1) is 10.213.K.(10+i), and nothing adds a
default route, so traffic never leaves the bridge.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

from raftpg.devcluster import NodePorts

logger = logging.getLogger(__name__)

SUBNET_PREFIX = "10.213"
IP_TIMEOUT = 10.0
MAX_HOSTS = 200
# Namespace hosts each have their own address, so their ports can be fixed; they still differ per
# node because the safety checker keys probes and writes by server port.
RAFT_PORT = 5010
API_PORT = 8008
PG_PORT = 5432
# A cut-off server never answers: without keepalives a client waits in recv() until the partition
# heals and then records an acknowledgement whose interval spans the whole partition.
CLIENT_OPTIONS = "keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_count=2 tcp_user_timeout=3000"


class NetnsUnavailable(RuntimeError):
    """This machine or user cannot create network namespaces (tests turn it into a skip)."""


def check_available() -> None:
    """Raise NetnsUnavailable unless we are root with `ip` and `setpriv` on PATH."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network-namespace hosts need root")
    for tool in ("ip", "setpriv"):
        if shutil.which(tool) is None:
            raise NetnsUnavailable(f"network-namespace hosts need {tool!r} on PATH")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {exc}") from exc
    if check and result.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _ip_quiet(*args: str) -> None:
    """Best-effort removal: log, never raise (a piece may already be gone)."""
    try:
        result = _ip(*args, check=False)
    except NetnsUnavailable as exc:
        logger.warning("%s", exc)
        return
    if result.returncode != 0 and "Cannot find" not in result.stderr and "No such" not in result.stderr:
        logger.warning("ip %s: %s", " ".join(args), result.stderr.strip())


def _subnets_in_use() -> set[int]:
    """Third octets of 10.213.K.* addresses already on root-namespace interfaces (another cluster)."""
    used = set()
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        for word in line.split():
            if word.startswith(SUBNET_PREFIX + "."):
                used.add(int(word.split("/")[0].split(".")[2]))
    return used


@dataclass
class NetnsHosts:
    """A bridge in the root namespace and `count` namespaces on it; names are `rp<tag>...` (<= 15 chars)."""

    count: int
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    octet: int | None = None
    active: bool = False
    client_options: str = CLIENT_OPTIONS

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_HOSTS:
            raise ValueError(f"between 1 and {MAX_HOSTS} hosts, not {self.count}")

    @property
    def bridge(self) -> str:
        return f"rp{self.tag}br"

    def namespace(self, index: int) -> str:
        return f"rp{self.tag}n{index}"

    def host_veth(self, index: int) -> str:
        return f"rp{self.tag}h{index}"

    def peer_veth(self, index: int) -> str:
        return f"rp{self.tag}e{index}"

    def address(self, index: int) -> str:
        if self.octet is None:
            raise RuntimeError("no subnet chosen yet: call create() first")
        return f"{SUBNET_PREFIX}.{self.octet}.{10 + index}"

    def ports(self, index: int) -> NodePorts:
        return NodePorts(raft=RAFT_PORT + index, api=API_PORT + index, pg=PG_PORT + index)

    def exec_prefix(self, index: int, user: str | None) -> list[str]:
        """argv prefix that runs a program inside host `index` as `user`. Both `ip netns exec` and
        `setpriv` exec in place, so the PID of the started process is the program's own PID."""
        prefix = ["ip", "netns", "exec", self.namespace(index)]
        if user is None:
            return prefix
        entry = pwd.getpwnam(user)
        return [*prefix, "setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"]

    def create(self) -> None:
        """Build the bridge and every host; on any failure remove what was built and raise."""
        if self.active:
            return
        check_available()
        self.active = True
        try:
            if self.octet is None or self.octet in _subnets_in_use():
                free = sorted(set(range(256)) - _subnets_in_use())
                if not free:
                    raise NetnsUnavailable(f"every {SUBNET_PREFIX}.K.0/24 subnet is in use")
                self.octet = free[0]
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{SUBNET_PREFIX}.{self.octet}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index in range(1, self.count + 1):
                self._create_host(index)
        except BaseException:
            self.destroy()
            raise
        logger.info("network-namespace hosts up: bridge %s, %s.%d.11-%d", self.bridge, SUBNET_PREFIX,
                    self.octet, 10 + self.count)

    def _create_host(self, index: int) -> None:
        ns = self.namespace(index)
        _ip("netns", "add", ns)
        _ip("link", "add", self.host_veth(index), "type", "veth", "peer", "name", self.peer_veth(index), "netns", ns)
        _ip("link", "set", self.host_veth(index), "master", self.bridge)
        _ip("link", "set", self.host_veth(index), "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", self.peer_veth(index))
        _ip("-n", ns, "link", "set", self.peer_veth(index), "up")

    def destroy(self) -> None:
        """Remove the namespaces, veths and bridge; missing pieces are fine (idempotent)."""
        if not self.active:
            return
        for index in range(1, self.count + 1):
            _ip_quiet("netns", "del", self.namespace(index))
            _ip_quiet("link", "del", self.host_veth(index))
        _ip_quiet("link", "del", self.bridge)
        self.active = False

    def cut(self, index: int) -> None:
        """Isolate host `index`: its veth's bridge end goes down, so no packet gets in or out."""
        _ip("link", "set", self.host_veth(index), "down")
        logger.info("cut %s (%s) off the network", self.namespace(index), self.address(index))

    def heal(self, index: int) -> None:
        _ip("link", "set", self.host_veth(index), "up")
        logger.info("healed %s (%s)", self.namespace(index), self.address(index))
