"""`raftpg config init`: one node's configuration from its address, its peers and the cluster secrets.

The document is validated by the same loader `raftpg run` uses before anything is written, so a
node.yml written by this module always starts (or it is not written at all).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raftpg.cli.cluster_secrets import ClusterSecrets
from raftpg.config import Address, ConfigError, DynamicConfig, Settings, WitnessSettings, parse_member_settings

DEFAULT_RAFT_PORT = 5010
DEFAULT_API_PORT = 8008
DEFAULT_PG_PORT = 5432
DEFAULT_DATA_DIR = Path("/var/lib/postgresql/15/main")
DEFAULT_RAFT_DIR = Path("/var/lib/raftpg/raft")
DEFAULT_TTL = 10.0
CONFIG_MODE = 0o600
HEADER = (
    "# Written by `raftpg config init`. `raftpg config sample` shows every setting with comments;\n"
    "# `raftpg config validate FILE` checks an edited copy. Holds secrets: keep it mode 0600.\n"
)


@dataclass(frozen=True)
class NodeInit:
    """Everything `config init` asks for; ports are the same on every host unless a peer names its own."""

    scope: str
    name: str
    self_host: str
    peers: tuple[str, ...]
    secrets: ClusterSecrets
    data_dir: Path = DEFAULT_DATA_DIR
    raft_dir: Path = DEFAULT_RAFT_DIR
    bin_dir: Path | None = None
    socket_dir: Path | None = None
    raft_port: int = DEFAULT_RAFT_PORT
    api_port: int = DEFAULT_API_PORT
    pg_port: int = DEFAULT_PG_PORT
    ttl: float = DEFAULT_TTL
    synchronous_mode: str = "quorum"
    witness: bool = False  # a Raft vote and a REST API, no PostgreSQL: no postgresql section, no initdb

    def raft_address(self, text: str, key: str) -> str:
        """HOST or HOST:PORT (IPv6 as [addr] or [addr]:port) -> host:port with the Raft port as default."""
        text = text.strip()
        bare = (text.startswith("[") and text.endswith("]")) or (not text.startswith("[") and ":" not in text)
        return str(Address.parse(f"{text}:{self.raft_port}" if bare else text, key))

    def host(self) -> str:
        """The host part of --self (its port, if any, is the Raft port)."""
        return Address.parse(self.raft_address(self.self_host, "--self"), "--self").host

    def document(self) -> dict[str, Any]:
        """The node.yml mapping; ValueError (naming the option) for a malformed address."""
        self_addr = self.raft_address(self.self_host, "--self")
        partners = [self.raft_address(peer, "--peers") for peer in self.peers]
        host = str(Address(self.host(), 1)).rsplit(":", 1)[0]
        loop_wait, retry_timeout = round(self.ttl / 5, 3), round(self.ttl * 0.4, 3)
        dcs = DynamicConfig(ttl=self.ttl, loop_wait=loop_wait, retry_timeout=retry_timeout,
                            synchronous_mode=self.synchronous_mode).to_dict()
        postgresql: dict[str, Any] = {
            # Every interface, so local tools (psql -h localhost) and clients on any network reach it;
            # the other members use connect_address.
            "listen": f"0.0.0.0:{self.pg_port}",
            "connect_address": f"{host}:{self.pg_port}",
            "data_dir": str(self.data_dir),
            "authentication": {
                "superuser": _auth(self.secrets.superuser.username, self.secrets.superuser.password),
                "replication": _auth(self.secrets.replication.username, self.secrets.replication.password),
            },
        }
        if self.bin_dir is not None:
            postgresql["bin_dir"] = str(self.bin_dir)
        if self.socket_dir is not None:
            postgresql["socket_dir"] = str(self.socket_dir)
        document: dict[str, Any] = {
            "scope": self.scope,
            "name": self.name,
            "raft": {"self_addr": self_addr, "partner_addrs": partners, "data_dir": str(self.raft_dir),
                     "password": self.secrets.raft_password},
            "restapi": {
                "listen": f"0.0.0.0:{self.api_port}",
                "connect_address": f"{host}:{self.api_port}",
                "authentication": _auth(self.secrets.restapi.username, self.secrets.restapi.password),
            },
            "postgresql": postgresql,
            "bootstrap": {"dcs": dcs, "initdb": ["data-checksums", {"encoding": "UTF8"}]},
        }
        if self.witness:
            del document["postgresql"], document["bootstrap"]["initdb"]
            document = {"witness": True, **document}
        return document


def _auth(username: str, password: str) -> dict[str, str]:
    return {"username": username, "password": password}


def render(init: NodeInit) -> tuple[str, Settings | WitnessSettings]:
    """The node.yml text and what the loader makes of it; ConfigError lists every problem."""
    try:
        document = init.document()
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    # No environment overrides: the file must be valid on its own.
    settings = parse_member_settings(document, env={})
    return HEADER + yaml.safe_dump(document, sort_keys=False), settings


def write_new(path: Path, text: str, *, force: bool) -> None:
    """Write mode-0600 `text` to `path` atomically; FileExistsError unless `force`."""
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; use --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, CONFIG_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def split_peers(text: str) -> tuple[str, ...]:
    """'a,b, c' -> ('a', 'b', 'c'); empty items are dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def peers_problem(self_host: str, peers: Sequence[str]) -> str | None:
    """A Raft cluster of one is a mistake here (quorum recovery has its own switch)."""
    if not peers:
        return "--peers: list the other members' addresses, e.g. --peers 10.0.0.12,10.0.0.13"
    if self_host.strip() in {peer.strip() for peer in peers}:
        return f"--peers: contains this node's own address {self_host}; list only the other members"
    return None
