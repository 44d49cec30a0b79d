"""The cluster-wide configuration kept in Raft (Patroni's "dcs" section): its model, its JSON
form and its validation, shared by the bootstrap section of the YAML file and the REST API."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from raftpg.config.validation import Report, Section, join_key, parse_parameters, type_name

MIN_TTL: float = 3.0
"""Shortest lease ttl accepted: below it the derived Raft timeouts get close to scheduling noise."""
ASYNC_START_TIMEOUT = 30.0
"""primary_start_timeout when unset and synchronous_mode is off (see DynamicConfig.start_timeout)."""

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

_SLOT_RE = re.compile(r"[a-z0-9_]+")


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


def _json_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


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
    report = Report()
    config = parse_dynamic(report, "", data)
    report.raise_if_any()
    return config, tuple(report.warnings)


def parse_dynamic(report: Report, path: str, data: object) -> DynamicConfig:
    s = Section(report, path, data, (*_DCS_KEYS, *_DCS_IGNORED))
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
    parameters = parse_parameters(report, pg.key("parameters"), pg.raw("parameters"), refused)
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


def _optional_float(s: Section, name: str, minimum: float) -> float | None:
    """A number whose absence (or null) means "the default follows other settings"."""
    return s.get_float(name, minimum, minimum) if s.raw(name) is not None else None


def _parse_synchronous_mode(s: Section) -> str:
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


def _parse_slots(report: Report, path: str, value: object) -> dict[str, dict[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        report.add(path, f"must be a mapping of slot name to its definition, got {type_name(value)}")
        return {}
    slots: dict[str, dict[str, str]] = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not _SLOT_RE.fullmatch(name):
            report.add(path, f"slot name {name!r} may contain only lower-case letters, digits and '_'")
            continue
        s = Section(report, join_key(path, name), spec, ("type", "database", "plugin"))
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
