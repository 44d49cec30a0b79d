"""The typed, immutable settings of one member (Settings and its sections), as the rest of raftpg
receives them; reading.py builds them from YAML and the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from raftpg.config.dynamic import DynamicConfig
from raftpg.config.validation import Report, Section
from raftpg.config.values import Address, Auth

TAG_KEYS = ("nofailover", "failover_priority", "noloadbalance", "clonefrom", "nosync", "replicatefrom")


@dataclass(frozen=True)
class RaftSettings:
    self_addr: Address
    partner_addrs: tuple[Address, ...]
    data_dir: Path
    password: str = field(repr=False)


@dataclass(frozen=True)
class RestApiSettings:
    listen: Address
    connect_address: Address
    authentication: Auth | None
    certfile: Path | None
    keyfile: Path | None
    cafile: Path | None
    verify_client: str  # "none" | "optional" | "required"

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile is not None else "http"
        return f"{scheme}://{self.connect_address}"


@dataclass(frozen=True)
class PostgresSettings:
    """An empty superuser/replication password means pg_hba decides (peer, trust or cert)."""

    listen: Address
    connect_address: Address
    data_dir: Path
    bin_dir: Path
    socket_dir: Path
    superuser: Auth
    replication: Auth
    parameters: Mapping[str, str]
    pg_hba: tuple[str, ...]
    # event name (CALLBACK_EVENTS) -> argv; run as `argv... ACTION ROLE SCOPE` (ha/callbacks.py)
    callbacks: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    callback_timeout: float = 30.0


CALLBACK_EVENTS = ("on_start", "on_stop", "on_restart", "on_reload", "on_role_change")  # Patroni's names


@dataclass(frozen=True)
class Tags:
    nofailover: bool = False
    failover_priority: int = 1
    noloadbalance: bool = False
    clonefrom: bool = False
    nosync: bool = False
    replicatefrom: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON for the member record; `replicatefrom` only when set, as Patroni publishes it."""
        data: dict[str, Any] = {
            "nofailover": self.nofailover,
            "failover_priority": self.failover_priority,
            "noloadbalance": self.noloadbalance,
            "clonefrom": self.clonefrom,
            "nosync": self.nosync,
        }
        if self.replicatefrom is not None:
            data["replicatefrom"] = self.replicatefrom
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tags:
        report = Report()
        tags = parse_tags(Section(report, "tags", data, TAG_KEYS))
        report.raise_if_any()
        return tags


def parse_tags(s: Section) -> Tags:
    replicatefrom = s.get_str("replicatefrom")
    return Tags(
        nofailover=s.get_bool("nofailover", False),
        failover_priority=s.get_int("failover_priority", 1, 0),
        noloadbalance=s.get_bool("noloadbalance", False),
        clonefrom=s.get_bool("clonefrom", False),
        nosync=s.get_bool("nosync", False),
        replicatefrom=replicatefrom if replicatefrom else None,
    )


@dataclass(frozen=True)
class WatchdogSettings:
    mode: str = "off"  # "off" | "automatic" | "required"
    device: Path = Path("/dev/watchdog")
    safety_margin: float = 5.0


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    format: str = "plain"  # "plain" | "json"


@dataclass(frozen=True)
class BootstrapSettings:
    dcs: DynamicConfig
    initdb: tuple[str, ...]  # initdb command-line arguments, e.g. ("--data-checksums", "--encoding=UTF8")


@dataclass(frozen=True)
class Settings:
    scope: str
    name: str
    raft: RaftSettings
    restapi: RestApiSettings
    postgresql: PostgresSettings
    bootstrap: BootstrapSettings
    tags: Tags
    watchdog: WatchdogSettings
    log: LogSettings
    source: Path | None = None
    warnings: tuple[str, ...] = ()  # accepted but ignored settings (Patroni keys raftpg lacks)
