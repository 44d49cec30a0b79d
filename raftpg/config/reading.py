"""Reading a member's settings: the YAML file (strict: duplicate keys refused) with RAFTPG_*
environment variables laid over it, validated into Settings.

Precedence, lowest first: built-in defaults < the YAML file < environment variables.

An environment variable ``RAFTPG_<SECTION>__<KEY>`` (double underscore between levels, names
case-insensitive) overrides one setting: ``RAFTPG_NAME=node2``, ``RAFTPG_RAFT__PASSWORD=...``,
``RAFTPG_TAGS__NOFAILOVER=true``, ``RAFTPG_BOOTSTRAP__DCS__TTL=5``. Values are read as YAML
scalars ("true", "5" get their types), except settings that are always text (passwords, names,
addresses, paths, modes), which are taken verbatim so that a numeric password stays a string.
Lists are comma-separated (``RAFTPG_RAFT__PARTNER_ADDRS=a:5010,b:5010``); ``pg_hba`` lines are
newline-separated because the lines themselves may contain commas. Variables whose first part
is not a top-level setting (``RAFTPG_CONFIG``, say) belong to other tools and are left alone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from raftpg.config.dynamic import parse_dynamic
from raftpg.config.model import TAG_KEYS, BootstrapSettings, Settings, parse_tags
from raftpg.config.sections import (
    PG_KEYS,
    RAFT_KEYS,
    RESTAPI_KEYS,
    cross_checks,
    parse_initdb,
    parse_log,
    parse_name,
    parse_postgresql,
    parse_raft,
    parse_restapi,
    parse_watchdog,
)
from raftpg.config.validation import Invalid, Report, Section, need, type_name
from raftpg.config.values import ConfigError
from raftpg.config.witness import WitnessSettings, parse_witness
from raftpg.mergepatch import thaw

logger = logging.getLogger(__name__)

ENV_PREFIX = "RAFTPG_"
_TOP_KEYS = ("scope", "name", "witness", "raft", "restapi", "postgresql", "bootstrap", "tags", "watchdog", "log")
_TOP_HINTS = dict.fromkeys(
    ("etcd", "etcd3", "consul", "zookeeper", "kubernetes", "exhibitor"),
    "raftpg keeps the cluster state in its own Raft; remove this section and configure 'raft'",
)
_STRING_LEAVES = frozenset(
    {"scope", "name", "self_addr", "data_dir", "password", "username", "listen", "connect_address",
     "certfile", "keyfile", "cafile", "verify_client", "bin_dir", "socket_dir", "device",
     "replicatefrom", "level", "format", "mode"}
)  # fmt: skip
_WITNESS_REFUSED = ("witness: true: this file configures a witness member (a Raft vote, no PostgreSQL); "
                    "use a database member's configuration here")
_ENV_LISTS: dict[tuple[str, ...], str] = {
    ("raft", "partner_addrs"): ",",
    ("postgresql", "pg_hba"): "\n",
    ("bootstrap", "initdb"): ",",
}


def parse_settings(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """A database member's settings (parse_member_settings); a witness's are refused."""
    settings = parse_member_settings(data, env)
    if isinstance(settings, WitnessSettings):
        raise ConfigError([_WITNESS_REFUSED])
    return settings


def parse_member_settings(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings | WitnessSettings:
    """Validate parsed YAML plus environment overrides (os.environ when `env` is None): a witness
    member's settings when it says `witness: true` (config/witness.py), else a database member's."""
    report = Report()
    top: object = data  # callers pass whatever YAML produced
    if not isinstance(top, Mapping):
        report.add("", f"must be a mapping at the top level, got {type_name(top)}")
        report.raise_if_any()
    merged = _apply_env(data, os.environ if env is None else env, report)
    root = Section(report, "", merged, _TOP_KEYS, _TOP_HINTS)
    if root.get_bool("witness", False):
        witness = parse_witness(root)
        report.raise_if_any()
        for warning in report.warnings:
            logger.warning("configuration: %s", warning)
        return need(witness)
    scope = parse_name(root, "scope")
    name = parse_name(root, "name")
    raft = parse_raft(root.section("raft", RAFT_KEYS))
    restapi = parse_restapi(root.section("restapi", RESTAPI_KEYS))
    postgresql = parse_postgresql(root.section("postgresql", PG_KEYS))
    boot = root.section("bootstrap", ("dcs", "initdb"))
    dcs = parse_dynamic(report, boot.key("dcs"), boot.raw("dcs"))
    initdb = parse_initdb(report, boot.key("initdb"), boot.raw("initdb"))
    tags = parse_tags(root.section("tags", TAG_KEYS))
    watchdog = parse_watchdog(root.section("watchdog", ("mode", "device", "safety_margin")))
    log = parse_log(root.section("log", ("level", "format")))
    cross_checks(report, name, raft, restapi, postgresql, tags, watchdog, dcs)
    report.raise_if_any()
    for warning in report.warnings:
        logger.warning("configuration: %s", warning)
    try:
        return Settings(
            scope=need(scope),
            name=need(name),
            raft=need(raft),
            restapi=need(restapi),
            postgresql=need(postgresql),
            bootstrap=BootstrapSettings(dcs=dcs, initdb=initdb),
            tags=tags,
            watchdog=watchdog,
            log=log,
            warnings=tuple(report.warnings),
        )
    except Invalid:  # a reader returned None without recording why: a bug in this module
        raise AssertionError("configuration rejected without a problem recorded") from None


def load_settings(path: Path | str, env: Mapping[str, str] | None = None) -> Settings:
    """A database member's settings from a file (load_member_settings); a witness's are refused."""
    settings = load_member_settings(path, env)
    if isinstance(settings, WitnessSettings):
        raise ConfigError([f"{settings.source}: {_WITNESS_REFUSED}"], source=settings.source)
    return settings


def load_member_settings(path: Path | str, env: Mapping[str, str] | None = None) -> Settings | WitnessSettings:
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
        settings = parse_member_settings({} if data is None else data, env)
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


def _apply_env(data: Mapping[str, Any], env: Mapping[str, str], report: Report) -> dict[str, Any]:
    """Overlay RAFTPG_* variables on a copy of `data`; note in `report` which key came from where."""
    merged: dict[str, Any] = thaw(data)
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
