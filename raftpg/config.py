"""Loading and validating raftpg's configuration into typed, immutable settings.

Precedence, lowest first: built-in defaults < the YAML file < environment variables.

An environment variable ``RAFTPG_<SECTION>__<KEY>`` (double underscore between levels, names
case-insensitive) overrides one setting: ``RAFTPG_NAME=node2``, ``RAFTPG_RAFT__PASSWORD=...``,
``RAFTPG_TAGS__NOFAILOVER=true``, ``RAFTPG_BOOTSTRAP__DCS__TTL=5``. Values are read as YAML
scalars ("true", "5" get their types), except settings that are always text (passwords, names,
addresses, paths, modes), which are taken verbatim so that a numeric password stays a string.
Lists are comma-separated (``RAFTPG_RAFT__PARTNER_ADDRS=a:5010,b:5010``); ``pg_hba`` lines are
newline-separated because the lines themselves may contain commas. Variables whose first part
is not a top-level setting (``RAFTPG_CONFIG``, say) belong to other tools and are left alone.

Validation collects every problem before failing, so an operator fixes a file in one pass;
each message starts with the key path it is about.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml
from yaml.constructor import ConstructorError

logger = logging.getLogger(__name__)

MIN_TTL: float = 3.0
"""Shortest lease ttl accepted: below it the derived Raft timeouts get close to scheduling noise."""
ASYNC_START_TIMEOUT = 30.0
"""primary_start_timeout when unset and synchronous_mode is off (see DynamicConfig.start_timeout)."""

ENV_PREFIX = "RAFTPG_"
MIN_RAFT_PASSWORD_LENGTH = 16
DOCS_RAFT_PASSWORD = "change-me-to-a-long-random-secret"
"""The placeholder documentation uses for raft.password; refused like any other sample."""

CLUSTER_WIDE_PARAMETERS = frozenset(
    {
        "max_connections",
        "max_wal_senders",
        "max_worker_processes",
        "max_locks_per_transaction",
        "max_prepared_transactions",
        "wal_level",
        "track_commit_timestamp",
    }
)
"""Must be equal (or a standby cannot replay) on every member: dynamic configuration only."""

RAFTPG_OWNED_PARAMETERS = frozenset(
    {
        "synchronous_standby_names",
        "primary_conninfo",
        "primary_slot_name",
        "port",
        "hot_standby",
        "listen_addresses",
        "unix_socket_directories",
        "data_directory",
        "config_file",
        "hba_file",
        "ident_file",
    }
)
"""Set by raftpg from other settings or from the cluster state; a user value would fight it."""

_WEAK_PASSWORDS = frozenset(
    {"secret", "password", "changeme", "change-me", "raftpg", "postgres", "patroni", "admin",
     "letmein", "qwerty", "example", "passw", DOCS_RAFT_PASSWORD, "changemetoalongrandomsecret"}
)  # fmt: skip
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_PARAM_RE = re.compile(r"[a-z_][a-z0-9_.]*")
_SLOT_RE = re.compile(r"[a-z0-9_]+")
_INITDB_OPTION_RE = re.compile(r"[a-z][a-z0-9-]*")
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*"})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PG_LIB_ROOT = Path("/usr/lib/postgresql")
_DEFAULT_SOCKET_DIR = Path("/var/run/postgresql")

_T = TypeVar("_T")


class ConfigError(Exception):
    """Invalid configuration. Carries every problem found, not just the first."""

    problems: tuple[str, ...]

    def __init__(self, problems: Iterable[str], source: Path | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f" in {source}" if source is not None else ""
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid configuration{where}:\n{lines}")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        """True for "listen on every interface", which nobody can connect to."""
        return self.host in _WILDCARD_HOSTS

    @property
    def is_loopback(self) -> bool:
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def same_endpoint(self, other: Address) -> bool:
        return self.host.lower() == other.host.lower() and self.port == other.port

    @classmethod
    def parse(cls, text: str, key: str = "address") -> Address:
        """Parse "host:port" or "[ipv6]:port"; ValueError names `key` and says what is wrong."""
        text = text.strip()
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ValueError(f"{key}: {text!r} is not of the form [ipv6]:port")
            host, port_text = text[1:end], text[end + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{key}: {host!r} in brackets is not an IPv6 address") from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError(f"{key}: {text!r} has no port; expected host:port")
            if ":" in host:
                raise ValueError(f"{key}: write an IPv6 address in brackets, e.g. [::1]:5432 (got {text!r})")
        if not host:
            raise ValueError(f"{key}: host is empty in {text!r}")
        if any(ch.isspace() or ch in ",/@[]" for ch in host):
            raise ValueError(f"{key}: {host!r} is not a valid host name or address")
        if not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"{key}: port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"{key}: port {port} is out of range 1-65535")
        return cls(host, port)


@dataclass(frozen=True)
class Auth:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Auth(username={self.username!r}, password=***)"


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
        report = _Report()
        tags = _parse_tags(_Section(report, "tags", data, _TAG_KEYS))
        report.raise_if_any()
        return tags


@dataclass(frozen=True)
class WatchdogSettings:
    mode: str = "off"  # "off" | "automatic" | "required"
    device: Path = Path("/dev/watchdog")
    safety_margin: float = 5.0


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    format: str = "plain"  # "plain" | "json"


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class DynamicConfig:
    """The cluster-wide configuration kept in Raft (Patroni's "dcs" configuration).

    `parameters` is authoritative for max_slot_wal_keep_size: when it does not name it, the
    `max_slot_wal_keep_size` field (default 8GB, so a dead member's slot cannot fill pg_wal) is
    added to it; when it does, the field mirrors it.
    """

    ttl: float = 10.0
    loop_wait: float = 2.0
    retry_timeout: float = 4.0
    maximum_lag_on_failover: int = 1048576
    primary_start_timeout: float | None = None  # None: follows synchronous_mode (start_timeout)
    use_pg_rewind: bool = True
    use_slots: bool = True
    parameters: Mapping[str, str] = field(default_factory=_empty_mapping)
    synchronous_mode: str = "off"  # "off" | "on" | "quorum"
    synchronous_mode_strict: bool = False
    synchronous_node_count: int = 1
    synchronous_fallback_timeout: float | None = None  # None: ttl (fallback_timeout)
    check_timeline: bool = False
    remove_data_directory_on_rewind_failure: bool = False
    member_slots_ttl: float = 1800.0
    permanent_slots: Mapping[str, Mapping[str, str]] = field(default_factory=_empty_mapping)
    max_slot_wal_keep_size: str = "8GB"
    pause: bool = False

    def __post_init__(self) -> None:
        params = dict(self.parameters)
        if "max_slot_wal_keep_size" in params:
            object.__setattr__(self, "max_slot_wal_keep_size", params["max_slot_wal_keep_size"])
        else:
            params["max_slot_wal_keep_size"] = self.max_slot_wal_keep_size
        object.__setattr__(self, "parameters", MappingProxyType(params))
        slots = {name: MappingProxyType(dict(spec)) for name, spec in self.permanent_slots.items()}
        object.__setattr__(self, "permanent_slots", MappingProxyType(slots))

    @property
    def start_timeout(self) -> float:
        """How long a crashed primary may take to restart in place before its holder lets go.

        Unset, it follows the mode: 0 in `on`/`quorum` (a synchronous standby holds every
        acknowledged write, so failing over to it is faster than a restart and forks no timeline
        on the crashed node), ASYNC_START_TIMEOUT in asynchronous mode (a failover there can lose
        the writes the standbys had not received, so restarting in place is worth waiting for).
        """
        if self.primary_start_timeout is not None:
            return self.primary_start_timeout
        return 0.0 if self.synchronous_mode in ("on", "quorum") else ASYNC_START_TIMEOUT

    @property
    def fallback_timeout(self) -> float:
        """How long commits stay blocked waiting for a synchronous standby before a non-strict
        primary runs asynchronously (DESIGN rule 5); unset, one ttl."""
        return self.ttl if self.synchronous_fallback_timeout is None else self.synchronous_fallback_timeout

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DynamicConfig:
        return validate_dynamic_config(data)[0]

    def to_dict(self) -> dict[str, Any]:
        """Patroni-shaped JSON; from_dict(to_dict()) gives an equal object. Settings left unset
        (their default follows other settings) are left out."""
        optional = {
            "primary_start_timeout": self.primary_start_timeout,
            "synchronous_fallback_timeout": self.synchronous_fallback_timeout,
        }
        return {
            "ttl": _json_number(self.ttl),
            "loop_wait": _json_number(self.loop_wait),
            "retry_timeout": _json_number(self.retry_timeout),
            "maximum_lag_on_failover": self.maximum_lag_on_failover,
            **{key: _json_number(value) for key, value in optional.items() if value is not None},
            "postgresql": {
                "parameters": dict(self.parameters),
                "use_pg_rewind": self.use_pg_rewind,
                "use_slots": self.use_slots,
                "remove_data_directory_on_rewind_failure": self.remove_data_directory_on_rewind_failure,
            },
            "synchronous_mode": self.synchronous_mode,
            "synchronous_mode_strict": self.synchronous_mode_strict,
            "synchronous_node_count": self.synchronous_node_count,
            "check_timeline": self.check_timeline,
            "member_slots_ttl": _json_number(self.member_slots_ttl),
            "slots": {name: dict(spec) for name, spec in self.permanent_slots.items()},
            "pause": self.pause,
        }


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


# --------------------------------------------------------------------------- reading machinery


class _Invalid(Exception):
    """A required value is missing or bad; its problem is already in the report."""


def _need(value: _T | None) -> _T:
    if value is None:
        raise _Invalid
    return value


def _kind(value: object) -> str:
    names = {dict: "mapping", list: "list", str: "string", int: "integer", float: "number", bool: "boolean"}
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    return names.get(type(value), type(value).__name__)


def _json_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


class _Report:
    """Problems and warnings found so far; `origins` tells which key came from which env var."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.origins: dict[str, str] = {}

    def add(self, key: str, message: str) -> None:
        self.add_line(key or "configuration", f"{key or 'configuration'}: {message}")

    def add_line(self, key: str, line: str) -> None:
        """Record a finished message about `key`, naming the environment variable that set it."""
        origin = self.origins.get(key) or self.origins.get(key.split("[")[0])
        self.problems.append(f"{line} (set by environment variable {origin})" if origin else line)

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{key}: {message}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Section:
    """One mapping of the input: reports unknown keys at once, then reads typed values by name."""

    def __init__(
        self,
        report: _Report,
        path: str,
        value: object,
        known: Iterable[str],
        hints: Mapping[str, str] | None = None,
    ) -> None:
        self.report = report
        self.path = path
        self.data: Mapping[Any, Any] = {}
        if isinstance(value, Mapping):
            self.data = value
        elif value is not None:
            report.add(path, f"must be a mapping, got {_kind(value)}")
        known = tuple(known)
        for key in self.data:
            if not isinstance(key, str):
                report.add(path, f"key {key!r} is not a string")
            elif key not in known:
                report.add(self.key(key), _unknown_key_message(key, known, hints or {}))

    def key(self, name: str) -> str:
        return _join(self.path, name)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def problem(self, name: str, message: str) -> None:
        self.report.add(self.key(name), message)

    def section(self, name: str, known: Iterable[str], hints: Mapping[str, str] | None = None) -> _Section:
        return _Section(self.report, self.key(name), self.raw(name), known, hints)

    def get_str(self, name: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.problem(name, "required setting is missing")
            return default
        if not isinstance(value, str):
            self.problem(name, f"must be a string, got {_kind(value)}")
            return None if required else default
        if required and not value.strip():
            self.problem(name, "must not be empty")
            return None
        return value

    def get_choice(self, name: str, choices: Sequence[str], default: str) -> str:
        value = self.get_str(name, default=default)
        if value is None or value.lower() not in choices:
            if value is not None:
                self.problem(name, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value.lower()

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(name, f"must be true or false, got {_kind(value)} {value!r}")
            return default
        return value

    def get_int(self, name: str, default: int, minimum: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(name, f"must be an integer, got {_kind(value)} {value!r}")
            return default
        if value < minimum:
            self.problem(name, f"must be at least {minimum}, got {value}")
            return default
        return value

    def get_float(self, name: str, default: float, minimum: float, *, exclusive: bool = False) -> float:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(name, f"must be a number, got {_kind(value)} {value!r}")
            return default
        if not math.isfinite(value):
            self.problem(name, f"must be a finite number, got {value}")
            return default
        if value < minimum or (exclusive and value == minimum):
            relation = "greater than" if exclusive else "at least"
            self.problem(name, f"must be {relation} {minimum:g}, got {value:g}")
            return default
        return float(value)

    def get_path(self, name: str, *, required: bool = False, absolute: bool = False) -> Path | None:
        text = self.get_str(name, required=required)
        if text is None or not text.strip():  # required ones were reported by get_str
            return None
        path = Path(text).expanduser()
        if absolute and not path.is_absolute():
            self.problem(name, f"must be an absolute path, got {text!r}")
            return None
        return path

    def get_address(self, name: str, *, required: bool = False, connectable: bool = False) -> Address | None:
        text = self.get_str(name, required=required)
        return None if text is None else _parse_address(self.report, self.key(name), text, connectable)

    def get_str_list(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(name, f"must be a list, got {_kind(value)}")
            return ()
        items: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.report.add(f"{self.key(name)}[{index}]", f"must be a non-empty string, got {item!r}")
            else:
                items.append(item)
        return tuple(items)


def _unknown_key_message(key: str, known: Sequence[str], hints: Mapping[str, str]) -> str:
    if key in hints:
        return f"unknown key: {hints[key]}"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key, did you mean '{close[0]}'?"
    return f"unknown key (known keys: {', '.join(sorted(known))})"


def _parse_address(report: _Report, key: str, text: str, connectable: bool) -> Address | None:
    try:
        address = Address.parse(text, key)
    except ValueError as exc:
        report.add_line(key, str(exc))
        return None
    if connectable and address.is_wildcard:
        report.add(key, f"must be an address other members can connect to, not {address.host}")
        return None
    return address


# --------------------------------------------------------------------------- dynamic configuration

_DCS_KEYS = (
    "ttl",
    "loop_wait",
    "retry_timeout",
    "maximum_lag_on_failover",
    "primary_start_timeout",
    "master_start_timeout",
    "postgresql",
    "synchronous_mode",
    "synchronous_mode_strict",
    "synchronous_node_count",
    "synchronous_fallback_timeout",
    "check_timeline",
    "slots",
    "member_slots_ttl",
    "pause",
)
_DCS_IGNORED = {
    "standby_cluster": "standby clusters are not supported",
    "ignore_slots": "raftpg only drops the member slots it created",
    "failsafe_mode": "there is no external DCS to lose; the lease lives in raftpg's own Raft",
    "max_timelines_history": "failover history is compacted with the Raft log",
    "maximum_lag_on_syncnode": "sync standbys are chosen by flush position only",
    "master_stop_timeout": "not implemented",
    "primary_stop_timeout": "not implemented",
    "citus": "Citus is not supported",
}
_DCS_PG_KEYS = ("parameters", "use_pg_rewind", "use_slots", "remove_data_directory_on_rewind_failure")
_DCS_PG_IGNORED = {
    "pg_hba": "use the local postgresql.pg_hba of each member",
    "pg_ident": "not supported",
    "recovery_conf": "raftpg writes the recovery settings itself",
    "remove_data_directory_on_diverged_timelines": "not implemented",
}


def validate_dynamic_config(data: Mapping[str, Any]) -> tuple[DynamicConfig, tuple[str, ...]]:
    """Check a Patroni-shaped dynamic configuration.

    Returns the config and warnings about Patroni settings raftpg accepts but ignores (so a
    configuration copied from Patroni still loads); raises ConfigError for unknown keys, wrong
    types and bad values.
    """
    report = _Report()
    config = _parse_dynamic(report, "", data)
    report.raise_if_any()
    return config, tuple(report.warnings)


def _parse_dynamic(report: _Report, path: str, data: object) -> DynamicConfig:
    s = _Section(report, path, data, (*_DCS_KEYS, *_DCS_IGNORED))
    for key, why in _DCS_IGNORED.items():
        if key in s.data:
            report.warn(s.key(key), f"Patroni setting ignored by raftpg ({why})")
    defaults = DynamicConfig()
    ttl = s.get_float("ttl", defaults.ttl, 0, exclusive=True)
    if ttl < MIN_TTL:
        s.problem("ttl", f"must be at least {MIN_TTL:g} seconds (Raft timeouts derive from it), got {ttl:g}")
    loop_wait = s.get_float("loop_wait", defaults.loop_wait, 0, exclusive=True)
    retry_timeout = s.get_float("retry_timeout", defaults.retry_timeout, 0, exclusive=True)
    if ttl >= MIN_TTL and loop_wait + 2 * retry_timeout > ttl:
        s.problem(
            "ttl",
            f"loop_wait + 2*retry_timeout ({loop_wait:g} + 2*{retry_timeout:g}) must not exceed "
            f"ttl ({ttl:g}): the leader could lose its lease while still retrying",
        )
    if s.has("primary_start_timeout") and s.has("master_start_timeout"):
        s.problem("master_start_timeout", "old name of primary_start_timeout; give only one of them")
    start_key = "master_start_timeout" if s.has("master_start_timeout") else "primary_start_timeout"
    pg = s.section("postgresql", (*_DCS_PG_KEYS, *_DCS_PG_IGNORED))
    for key, why in _DCS_PG_IGNORED.items():
        if key in pg.data:
            report.warn(pg.key(key), f"Patroni setting ignored by raftpg ({why})")
    refused = dict.fromkeys(RAFTPG_OWNED_PARAMETERS, "is managed by raftpg and cannot be set")
    parameters = _parse_parameters(report, pg.key("parameters"), pg.raw("parameters"), refused)
    wal_level = parameters.get("wal_level")
    if wal_level is not None and wal_level.lower() not in ("replica", "logical"):
        report.add(pg.key("parameters.wal_level"), f"must be replica or logical, got {wal_level!r}")
    return DynamicConfig(
        ttl=ttl,
        loop_wait=loop_wait,
        retry_timeout=retry_timeout,
        maximum_lag_on_failover=s.get_int("maximum_lag_on_failover", defaults.maximum_lag_on_failover, 0),
        primary_start_timeout=_optional_float(s, start_key, 0),
        use_pg_rewind=pg.get_bool("use_pg_rewind", defaults.use_pg_rewind),
        use_slots=pg.get_bool("use_slots", defaults.use_slots),
        parameters=parameters,
        synchronous_mode=_parse_synchronous_mode(s),
        synchronous_mode_strict=s.get_bool("synchronous_mode_strict", False),
        synchronous_node_count=s.get_int("synchronous_node_count", 1, 1),
        synchronous_fallback_timeout=_optional_float(s, "synchronous_fallback_timeout", 0),
        check_timeline=s.get_bool("check_timeline", False),
        remove_data_directory_on_rewind_failure=pg.get_bool("remove_data_directory_on_rewind_failure", False),
        member_slots_ttl=s.get_float("member_slots_ttl", defaults.member_slots_ttl, 0),
        permanent_slots=_parse_slots(report, s.key("slots"), s.raw("slots")),
        pause=s.get_bool("pause", False),
    )


def _optional_float(s: _Section, name: str, minimum: float) -> float | None:
    """A number whose absence (or null) means "the default follows other settings"."""
    return s.get_float(name, minimum, minimum) if s.raw(name) is not None else None


def _parse_synchronous_mode(s: _Section) -> str:
    """YAML 1.1 reads on/off as booleans, so true/false mean on/off here."""
    value = s.raw("synchronous_mode")
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "on" if value else "off"
    text = value.lower() if isinstance(value, str) else None
    aliases = {"off": "off", "false": "off", "on": "on", "true": "on", "quorum": "quorum"}
    if text not in aliases:
        s.problem("synchronous_mode", f"must be one of off, on, quorum, got {value!r}")
        return "off"
    return aliases[text]


def _parameter_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _parse_parameters(
    report: _Report, path: str, value: object, refused: Mapping[str, str]
) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        report.add(path, f"must be a mapping, got {_kind(value)}")
        return {}
    result: dict[str, str] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not _PARAM_RE.fullmatch(name.lower()):
            report.add(path, f"{name!r} is not a valid PostgreSQL parameter name")
            continue
        key, lowered = _join(path, name), name.lower()
        if lowered in refused:
            report.add(key, refused[lowered])
            continue
        text = _parameter_value(raw)
        if text is None:
            report.add(key, f"must be a string, number or boolean, got {_kind(raw)}")
            continue
        result[lowered] = text
    return result


def _parse_slots(report: _Report, path: str, value: object) -> dict[str, dict[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        report.add(path, f"must be a mapping of slot name to its definition, got {_kind(value)}")
        return {}
    slots: dict[str, dict[str, str]] = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not _SLOT_RE.fullmatch(name):
            report.add(path, f"slot name {name!r} may contain only lower-case letters, digits and '_'")
            continue
        s = _Section(report, _join(path, name), spec, ("type", "database", "plugin"))
        kind = s.get_choice("type", ("physical", "logical"), "physical")
        slot = {"type": kind}
        for key in ("database", "plugin"):
            text = s.get_str(key, required=kind == "logical")
            if text is not None:
                if kind == "physical":
                    s.problem(key, "is only for logical slots")
                slot[key] = text
        slots[name] = slot
    return slots


# --------------------------------------------------------------------------- local settings

_TOP_KEYS = ("scope", "name", "raft", "restapi", "postgresql", "bootstrap", "tags", "watchdog", "log")
_TOP_HINTS = dict.fromkeys(
    ("etcd", "etcd3", "consul", "zookeeper", "kubernetes", "exhibitor"),
    "raftpg keeps the cluster state in its own Raft; remove this section and configure 'raft'",
)
_RAFT_KEYS = ("self_addr", "partner_addrs", "data_dir", "password")
_RESTAPI_KEYS = (
    "listen",
    "connect_address",
    "authentication",
    "certfile",
    "keyfile",
    "cafile",
    "verify_client",
)
_PG_KEYS = (
    "listen",
    "connect_address",
    "data_dir",
    "bin_dir",
    "socket_dir",
    "authentication",
    "parameters",
    "pg_hba",
    "callbacks",
    "callback_timeout",
)
_TAG_KEYS = ("nofailover", "failover_priority", "noloadbalance", "clonefrom", "nosync", "replicatefrom")
_STRING_LEAVES = frozenset(
    {"scope", "name", "self_addr", "data_dir", "password", "username", "listen", "connect_address",
     "certfile", "keyfile", "cafile", "verify_client", "bin_dir", "socket_dir", "device",
     "replicatefrom", "level", "format", "mode"}
)  # fmt: skip
_ENV_LISTS: dict[tuple[str, ...], str] = {
    ("raft", "partner_addrs"): ",",
    ("postgresql", "pg_hba"): "\n",
    ("bootstrap", "initdb"): ",",
}


def parse_settings(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Validate parsed YAML plus environment overrides (os.environ when `env` is None)."""
    report = _Report()
    top: object = data  # callers pass whatever YAML produced
    if not isinstance(top, Mapping):
        report.add("", f"must be a mapping at the top level, got {_kind(top)}")
        report.raise_if_any()
    merged = _apply_env(data, os.environ if env is None else env, report)
    root = _Section(report, "", merged, _TOP_KEYS, _TOP_HINTS)
    scope = _parse_name(root, "scope")
    name = _parse_name(root, "name")
    raft = _parse_raft(root.section("raft", _RAFT_KEYS))
    restapi = _parse_restapi(root.section("restapi", _RESTAPI_KEYS))
    postgresql = _parse_postgresql(root.section("postgresql", _PG_KEYS))
    boot = root.section("bootstrap", ("dcs", "initdb"))
    dcs = _parse_dynamic(report, boot.key("dcs"), boot.raw("dcs"))
    initdb = _parse_initdb(report, boot.key("initdb"), boot.raw("initdb"))
    tags = _parse_tags(root.section("tags", _TAG_KEYS))
    watchdog = _parse_watchdog(root.section("watchdog", ("mode", "device", "safety_margin")))
    log = _parse_log(root.section("log", ("level", "format")))
    _cross_checks(report, name, raft, restapi, postgresql, tags, watchdog, dcs)
    report.raise_if_any()
    for warning in report.warnings:
        logger.warning("configuration: %s", warning)
    try:
        return Settings(
            scope=_need(scope),
            name=_need(name),
            raft=_need(raft),
            restapi=_need(restapi),
            postgresql=_need(postgresql),
            bootstrap=BootstrapSettings(dcs=dcs, initdb=initdb),
            tags=tags,
            watchdog=watchdog,
            log=log,
            warnings=tuple(report.warnings),
        )
    except _Invalid:  # a reader returned None without recording why: a bug in this module
        raise AssertionError("configuration rejected without a problem recorded") from None


def load_settings(path: Path | str, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a YAML file (plus os.environ when `env` is None).

    Every failure is a ConfigError naming the file; YAML syntax errors also give line and column.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{path}: cannot read: {reason}"], source=path) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = exc.problem or exc.context or "malformed YAML"
        raise ConfigError([f"{where}: {problem}"], source=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: malformed YAML: {exc}"], source=path) from None
    try:
        settings = parse_settings({} if data is None else data, env)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=path) from None
    return dataclasses.replace(settings, source=path)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which YAML would otherwise silently merge."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _thaw(value: object) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(item) for item in value]
    return value


def _apply_env(data: Mapping[str, Any], env: Mapping[str, str], report: _Report) -> dict[str, Any]:
    """Overlay RAFTPG_* variables on a copy of `data`; note in `report` which key came from where."""
    merged: dict[str, Any] = _thaw(data)
    for variable in sorted(env):
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        parts = [part.lower() for part in variable[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            report.add(variable, "malformed environment variable name (empty part between '__')")
            continue
        if parts[0] not in _TOP_KEYS:
            logger.debug("environment variable %s is not a setting; left alone", variable)
            continue
        text = env[variable]
        separator = _ENV_LISTS.get(tuple(parts))
        value: Any
        if separator is not None:
            value = [item.strip() for item in text.split(separator) if item.strip()]
        elif parts[-1] in _STRING_LEAVES:
            value = text if text != "" else None
        else:
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                value = text
        node = merged
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        report.origins[".".join(parts)] = variable
    return merged


def _parse_name(root: _Section, key: str) -> str | None:
    value = root.get_str(key, required=True)
    if value is not None and not _NAME_RE.fullmatch(value):
        root.problem(key, f"may contain only letters, digits, '_', '.' and '-', got {value!r}")
        return None
    return value


def _weak_password_problem(password: str) -> str | None:
    lowered = password.lower()
    letters = "".join(ch for ch in lowered if ch.isalpha())
    if len(password) < MIN_RAFT_PASSWORD_LENGTH:
        return (
            f"must be at least {MIN_RAFT_PASSWORD_LENGTH} characters: it authenticates and "
            "encrypts Raft traffic, which carries pickles (remote code execution for whoever knows it)"
        )
    repeated_sample = letters and any(letters == w * (len(letters) // len(w)) for w in _WEAK_PASSWORDS)
    if lowered in _WEAK_PASSWORDS or repeated_sample:
        return "is a well-known sample password; use a random one (`raftpg config sample` generates one)"
    if password in (password + password)[1:-1]:
        return "is a repeated pattern (e.g. all one character); use a random one"
    return None


def _parse_raft(s: _Section) -> RaftSettings | None:
    self_addr = s.get_address("self_addr", required=True, connectable=True)
    partners: list[Address] = []
    raw_partners = s.raw("partner_addrs")
    if raw_partners is not None and not isinstance(raw_partners, list):
        s.problem("partner_addrs", f"must be a list of host:port, got {_kind(raw_partners)}")
    for index, item in enumerate(raw_partners if isinstance(raw_partners, list) else []):
        key = f"{s.key('partner_addrs')}[{index}]"
        if not isinstance(item, str):
            s.report.add(key, f"must be a host:port string, got {_kind(item)}")
            continue
        address = _parse_address(s.report, key, item, connectable=True)
        if address is None:
            continue
        if any(address.same_endpoint(seen) for seen in partners):
            s.problem("partner_addrs", f"{address} is listed more than once")
        elif self_addr is not None and address.same_endpoint(self_addr):
            s.problem("partner_addrs", f"contains raft.self_addr {address}; list only the other members")
        else:
            partners.append(address)
    data_dir = s.get_path("data_dir", required=True, absolute=True)
    password = s.get_str("password", required=True)
    if password is not None:
        problem = _weak_password_problem(password)
        if problem is not None:
            s.problem("password", problem)
            password = None
    try:
        return RaftSettings(_need(self_addr), tuple(partners), _need(data_dir), _need(password))
    except _Invalid:
        return None


def _parse_connect_address(s: _Section, listen: Address | None) -> Address | None:
    if s.has("connect_address"):
        return s.get_address("connect_address", connectable=True)
    if listen is not None and listen.is_wildcard:
        s.problem(
            "connect_address",
            f"required because listen host {listen.host} is a wildcard: "
            "other members need an address to connect to",
        )
        return None
    return listen


def _parse_auth(parent: _Section, name: str, *, required: bool, password_required: bool) -> Auth | None:
    if not parent.has(name):
        if required:
            parent.problem(name, "required setting is missing")
        return None
    s = parent.section(name, ("username", "password"))
    username = s.get_str("username", required=True)
    password = s.get_str("password", required=password_required, default="")
    try:
        return Auth(_need(username), _need(password))
    except _Invalid:
        return None


def _parse_restapi(s: _Section) -> RestApiSettings | None:
    listen = s.get_address("listen", required=True)
    connect_address = _parse_connect_address(s, listen)
    authentication = _parse_auth(s, "authentication", required=False, password_required=True)
    if listen is not None and not listen.is_loopback and not s.has("authentication"):
        s.problem(
            "authentication",
            f"required because restapi.listen ({listen}) is reachable beyond loopback: "
            "otherwise anyone could trigger switchovers and restarts",
        )
    certfile, keyfile, cafile = (s.get_path(key) for key in ("certfile", "keyfile", "cafile"))
    verify_client = s.get_choice("verify_client", ("none", "optional", "required"), "none")
    if certfile is not None and keyfile is None:
        s.problem("keyfile", "required when restapi.certfile is set")
    if keyfile is not None and certfile is None:
        s.problem("certfile", "required when restapi.keyfile is set")
    if verify_client != "none" and certfile is None:
        s.problem("verify_client", f"{verify_client} needs TLS: set restapi.certfile and restapi.keyfile")
    if verify_client != "none" and cafile is None:
        s.problem("cafile", f"required to verify client certificates (verify_client: {verify_client})")
    try:
        return RestApiSettings(
            _need(listen), _need(connect_address), authentication, certfile, keyfile, cafile, verify_client
        )
    except _Invalid:
        return None


def _parse_postgresql(s: _Section) -> PostgresSettings | None:
    listen = s.get_address("listen", required=True)
    connect_address = _parse_connect_address(s, listen)
    data_dir = s.get_path("data_dir", required=True, absolute=True)
    bin_dir = s.get_path("bin_dir", absolute=True)
    if bin_dir is None and not s.has("bin_dir"):
        bin_dir = discover_bin_dir()
        if bin_dir is None:
            s.problem(
                "bin_dir",
                f"not set and no PostgreSQL found (tried pg_config --bindir and {_PG_LIB_ROOT}/*/bin)",
            )
    elif bin_dir is not None and not (bin_dir / "pg_ctl").is_file():
        s.problem("bin_dir", f"{bin_dir} contains no pg_ctl")
    socket_dir = s.get_path("socket_dir", absolute=True)
    if socket_dir is None and not s.has("socket_dir") and data_dir is not None:
        socket_dir = _DEFAULT_SOCKET_DIR if _DEFAULT_SOCKET_DIR.is_dir() else data_dir.parent
    auth = s.section("authentication", ("superuser", "replication"))
    superuser = _parse_auth(auth, "superuser", required=True, password_required=False)
    replication = _parse_auth(auth, "replication", required=True, password_required=False)
    hint = "must be equal on every member: set it in bootstrap.dcs.postgresql.parameters (dynamic config)"
    refused = dict.fromkeys(CLUSTER_WIDE_PARAMETERS, hint)
    refused.update(dict.fromkeys(RAFTPG_OWNED_PARAMETERS, "is managed by raftpg and cannot be set"))
    parameters = _parse_parameters(s.report, s.key("parameters"), s.raw("parameters"), refused)
    try:
        return PostgresSettings(
            listen=_need(listen),
            connect_address=_need(connect_address),
            data_dir=_need(data_dir),
            bin_dir=_need(bin_dir),
            socket_dir=_need(socket_dir),
            superuser=_need(superuser),
            replication=_need(replication),
            parameters=MappingProxyType(parameters),
            pg_hba=s.get_str_list("pg_hba"),
            callbacks=_parse_callbacks(s.section("callbacks", CALLBACK_EVENTS)),
            callback_timeout=s.get_float("callback_timeout", 30.0, 0, exclusive=True),
        )
    except _Invalid:
        return None


def _parse_callbacks(s: _Section) -> Mapping[str, tuple[str, ...]]:
    """Each callback is a command line (split as a shell would, but never run by one) or a list."""
    commands: dict[str, tuple[str, ...]] = {}
    for event in CALLBACK_EVENTS:
        value = s.raw(event)
        if value is None:
            continue
        if isinstance(value, str):
            try:
                argv = shlex.split(value)
            except ValueError as exc:
                s.problem(event, f"cannot be split into words: {exc}")
                continue
        elif isinstance(value, list) and all(isinstance(item, str) and item for item in value):
            argv = list(value)
        else:
            s.problem(event, f"must be a command line or a list of non-empty strings, got {_kind(value)}")
            continue
        if not argv:
            s.problem(event, "must not be empty")
            continue
        commands[event] = tuple(argv)
    return MappingProxyType(commands)


_INITDB_OWNED = frozenset({"pgdata", "d", "username", "u", "pwfile"})


def _parse_initdb(report: _Report, path: str, value: object) -> tuple[str, ...]:
    """Patroni's list form: "data-checksums" or {encoding: UTF8}; returned as initdb arguments."""
    if value is None:
        return ()
    if not isinstance(value, list):
        report.add(path, f"must be a list of options, got {_kind(value)}")
        return ()
    args: list[str] = []
    for index, item in enumerate(value):
        key = f"{path}[{index}]"
        if isinstance(item, str):
            option, sep, argument = item.lstrip("-").partition("=")
            arg: object = argument if sep else None
        elif isinstance(item, Mapping) and len(item) == 1:
            ((option, arg),) = item.items()
        else:
            report.add(key, f"must be an option name or a one-key mapping, got {item!r}")
            continue
        if not isinstance(option, str) or not _INITDB_OPTION_RE.fullmatch(option.lower()):
            report.add(key, f"{option!r} is not an initdb option name")
        elif option.lower() in _INITDB_OWNED:
            report.add(key, f"--{option} is passed by raftpg itself")
        elif arg is None:
            args.append(f"--{option}")
        elif isinstance(arg, bool) or not isinstance(arg, str | int | float):
            report.add(key, f"value of {option} must be a string or number, got {_kind(arg)}")
        else:
            args.append(f"--{option}={arg}")
    return tuple(args)


def _parse_tags(s: _Section) -> Tags:
    replicatefrom = s.get_str("replicatefrom")
    return Tags(
        nofailover=s.get_bool("nofailover", False),
        failover_priority=s.get_int("failover_priority", 1, 0),
        noloadbalance=s.get_bool("noloadbalance", False),
        clonefrom=s.get_bool("clonefrom", False),
        nosync=s.get_bool("nosync", False),
        replicatefrom=replicatefrom if replicatefrom else None,
    )


def _parse_watchdog(s: _Section) -> WatchdogSettings:
    mode_raw = s.raw("mode")
    if mode_raw is False:  # YAML 1.1 reads an unquoted `off` as false
        mode = "off"
    elif isinstance(mode_raw, bool):
        s.problem("mode", "must be one of off, automatic, required, got true")
        mode = "off"
    else:
        mode = s.get_choice("mode", ("off", "automatic", "required"), "off")
    return WatchdogSettings(
        mode=mode,
        device=s.get_path("device", absolute=True) or WatchdogSettings.device,
        safety_margin=s.get_float("safety_margin", WatchdogSettings.safety_margin, 0),
    )


def _parse_log(s: _Section) -> LogSettings:
    level = s.get_str("level", default="INFO") or "INFO"
    level = "WARNING" if level.upper() == "WARN" else level.upper()
    if level not in _LOG_LEVELS:
        s.problem("level", f"must be one of {', '.join(_LOG_LEVELS)}, got {s.raw('level')!r}")
        level = "INFO"
    return LogSettings(level=level, format=s.get_choice("format", ("plain", "json"), "plain"))


def _cross_checks(
    report: _Report,
    name: str | None,
    raft: RaftSettings | None,
    restapi: RestApiSettings | None,
    postgresql: PostgresSettings | None,
    tags: Tags,
    watchdog: WatchdogSettings,
    dcs: DynamicConfig,
) -> None:
    """Rules that span sections."""
    pg_data = postgresql.data_dir if postgresql else None
    if raft is not None and (raft.data_dir == pg_data or pg_data in raft.data_dir.parents):
        report.add("raft.data_dir", "must not be inside postgresql.data_dir (rewind and clone replace it)")
    listeners = [
        ("raft.self_addr", raft.self_addr if raft else None),
        ("restapi.listen", restapi.listen if restapi else None),
        ("postgresql.listen", postgresql.listen if postgresql else None),
    ]
    for index, (key, address) in enumerate(listeners):
        for other_key, other in listeners[:index]:
            if address is None or other is None or address.port != other.port:
                continue
            if address.is_wildcard or other.is_wildcard or address.host.lower() == other.host.lower():
                report.add(key, f"port {address.port} is also used by {other_key}")
    if name is not None and tags.replicatefrom == name:
        report.add("tags.replicatefrom", "cannot be this member's own name")
    if watchdog.mode != "off" and watchdog.safety_margin >= dcs.ttl:
        report.add("watchdog.safety_margin", f"must be less than bootstrap.dcs.ttl ({dcs.ttl:g})")


# --------------------------------------------------------------------------- helpers for others


def discover_bin_dir() -> Path | None:
    """Where PostgreSQL's programs are: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            result = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=5, check=True
            )
            candidate = Path(result.stdout.strip())
            if result.stdout.strip() and (candidate / "pg_ctl").is_file():
                return candidate
        except (OSError, subprocess.SubprocessError) as exc:
            logger.debug("pg_config --bindir failed: %s", exc)
    found = [path for path in _PG_LIB_ROOT.glob("*/bin") if (path / "pg_ctl").is_file()]
    if not found:
        return None
    return max(found, key=lambda path: tuple(int(n) for n in re.findall(r"\d+", path.parent.name)))


def generate_raft_password() -> str:
    """43 URL-safe random characters (256 bits)."""
    return secrets.token_urlsafe(32)


def raft_timings(ttl: float) -> dict[str, float]:
    """pysyncobj timeouts derived from the lease ttl (seconds).

    The lease holder renews through Raft, so a Raft leader change must finish well within one
    ttl or a healthy primary would lose its lease. Followers notice a dead Raft leader after a
    random election timeout in [raftMinTimeout, raftMaxTimeout] = [0.08, 0.16] * ttl; even with
    a split vote and a reconnect (connectionRetryTime = 0.1 * ttl) the new leader is there in
    about 0.4 * ttl, leaving the holder more than half the lease to renew. Heartbeats
    (appendEntriesPeriod) come at least four times per minimum election timeout and at most
    every 100 ms, so a missed one or two do not start an election. connectionTimeout
    (0.2 * ttl) is at least raftMaxTimeout, as pysyncobj requires, so a silent peer's TCP
    connection is dropped about when its leadership would be. A leader cut off from the
    majority steps down after leaderFallbackTimeout = 0.3 * ttl, so its callers get "no leader"
    quickly instead of waiting for commits that cannot happen. pysyncobj's defaults (5 s
    reconnect, 30 s fallback) are far too slow for a short lease. At MIN_TTL the election
    timeout is 240-480 ms, still clear of pysyncobj's 50 ms tick.
    """
    if ttl < MIN_TTL:
        raise ValueError(f"ttl must be at least {MIN_TTL:g} seconds, got {ttl:g}")
    raft_min = ttl * 0.08
    timings = {
        "raftMinTimeout": raft_min,
        "raftMaxTimeout": ttl * 0.16,
        "appendEntriesPeriod": min(0.1, raft_min / 4),
        "connectionTimeout": ttl * 0.2,
        "connectionRetryTime": ttl * 0.1,
        "leaderFallbackTimeout": ttl * 0.3,
    }
    return {key: round(value, 4) for key, value in timings.items()}


def _q(value: object) -> str:
    """A YAML-safe double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(str(value))


def sample_config(
    name: str = "node1",
    *,
    scope: str = "demo",
    host: str = "127.0.0.1",
    raft_port: int = 5010,
    partner_addrs: Sequence[str] = ("127.0.0.1:5011", "127.0.0.1:5012"),
    restapi_port: int = 8008,
    postgresql_port: int = 5432,
    raft_data_dir: Path | str = "/var/lib/raftpg/raft",
    postgresql_data_dir: Path | str = "/var/lib/postgresql/15/main",
    bin_dir: Path | str | None = None,
    raft_password: str | None = None,
) -> str:
    """A commented example configuration with fresh random passwords; it passes load_settings."""
    ports = (raft_port, restapi_port, postgresql_port)
    raft_addr, api_addr, pg_addr = (str(Address(host, port)) for port in ports)
    partners = ", ".join(_q(partner) for partner in partner_addrs)
    found = Path(bin_dir) if bin_dir is not None else discover_bin_dir()
    bin_line = f"bin_dir: {_q(found)}" if found else "# bin_dir: /usr/lib/postgresql/15/bin"
    password = raft_password or generate_raft_password()
    return f"""\
# raftpg configuration for member {name} of cluster {scope}.
# Precedence: built-in defaults < this file < environment variables RAFTPG_<SECTION>__<KEY>
# (for example RAFTPG_RAFT__PASSWORD or RAFTPG_TAGS__NOFAILOVER=true).

# Name of the cluster: the same on every member (letters, digits, '_', '.', '-').
scope: {_q(scope)}
# Name of this member: unique within the cluster.
name: {_q(name)}

raft:
  # Address this member's Raft replica listens on and the other members connect to.
  # Bind it to the cluster network only and firewall it from everything else.
  self_addr: {_q(raft_addr)}
  # Raft addresses of the other members (not this one).
  partner_addrs: [{partners}]
  # Raft journal and snapshot. Never inside the PostgreSQL data directory.
  data_dir: {_q(raft_data_dir)}
  # Shared secret of all members: it authenticates and encrypts every Raft message. Whoever
  # knows it can join the cluster and run code in raftpg, so guard it like a root password.
  # Generated at random for this sample; use the same value on every member (>= 16 characters).
  password: {_q(password)}

restapi:
  # Where the REST API listens (health checks for HAProxy, status, operator actions).
  listen: {_q(api_addr)}
  # How other members and tools reach it. Defaults to listen; required when listen is 0.0.0.0.
  connect_address: {_q(api_addr)}
  # Basic authentication for unsafe requests. Required when listen is not a loopback address.
  authentication:
    username: "admin"
    password: {_q(secrets.token_urlsafe(18))}
  # TLS: set certfile and keyfile to serve HTTPS; cafile plus verify_client (none, optional,
  # required) to check client certificates.
  certfile: null
  keyfile: null
  cafile: null
  verify_client: "none"

postgresql:
  # Address PostgreSQL listens on; its port becomes PostgreSQL's port.
  listen: {_q(pg_addr)}
  # How the other members and clients reach this PostgreSQL. Defaults to listen.
  connect_address: {_q(pg_addr)}
  data_dir: {_q(postgresql_data_dir)}
  # Directory of pg_ctl, initdb, ... Discovered (pg_config --bindir, then the newest
  # /usr/lib/postgresql/*/bin) when not set.
  {bin_line}
  # unix_socket_directories; defaults to /var/run/postgresql if it exists, else the parent of data_dir.
  # socket_dir: /var/run/postgresql
  authentication:
    superuser:
      username: "postgres"
      password: {_q(secrets.token_urlsafe(18))}
    replication:
      username: "replicator"
      password: {_q(secrets.token_urlsafe(18))}
  # postgresql.conf settings for this member only. Settings that must match on every member
  # (max_connections, wal_level, max_wal_senders, ...) belong in bootstrap.dcs below; raftpg
  # sets port, listen_addresses, primary_conninfo, synchronous_standby_names, ... itself.
  parameters: {{}}
  # Extra pg_hba.conf lines for this member, e.g. "host all all 10.0.0.0/24 scram-sha-256".
  pg_hba: []

bootstrap:
  # Cluster-wide settings, used once when the cluster is first initialised; afterwards they
  # live in Raft and are changed through the REST API for the whole cluster at once.
  dcs:
    # Leader lease in seconds (at least {MIN_TTL:g}); Raft timeouts are derived from it.
    ttl: 10
    # Seconds between HA cycles.
    loop_wait: 2
    # Give up on Raft or PostgreSQL calls after this long. loop_wait + 2*retry_timeout <= ttl.
    retry_timeout: 4
    # A replica further behind than this many bytes does not take part in a failover.
    maximum_lag_on_failover: 1048576
    # Seconds a crashed primary may take to restart in place before a failover. Unset: 0 in
    # on/quorum mode (fail over to a synchronous standby at once), 30 in asynchronous mode.
    # primary_start_timeout: 30
    # off, on or quorum. quorum: a commit is acknowledged only once enough standbys have it
    # that any member which could be promoted has it too, so failover loses no acknowledged write.
    synchronous_mode: "quorum"
    # true: refuse writes when no synchronous standby is available (instead of going async).
    synchronous_mode_strict: false
    synchronous_node_count: 1
    # Seconds commits stay blocked waiting for a synchronous standby (after this primary starts,
    # or its last standby drops) before a non-strict primary runs asynchronously. Unset: ttl.
    # synchronous_fallback_timeout: 10
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 100
        wal_level: "replica"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: "on"
        # Caps the WAL a dead member's slot can hold back.
        max_slot_wal_keep_size: "8GB"
  # initdb options for the very first member.
  initdb:
    - data-checksums
    - encoding: UTF8

# Published in the member record; they steer failover and load balancing.
tags:
  nofailover: false        # never promote this member
  failover_priority: 1     # preferred (higher) among equally healthy candidates
  noloadbalance: false     # /replica health check answers 503
  clonefrom: false         # preferred source for new replicas
  nosync: false            # never a synchronous standby
  replicatefrom: null      # stream from this member instead of the primary

watchdog:
  mode: "off"              # off, automatic or required
  device: "/dev/watchdog"
  safety_margin: 5         # seconds before lease expiry the watchdog fires

log:
  level: "INFO"            # DEBUG, INFO, WARNING, ERROR, CRITICAL
  format: "plain"          # plain or json
"""
