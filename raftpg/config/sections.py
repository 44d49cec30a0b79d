"""Readers for each section of a member's own settings (raft, restapi, postgresql, tags, watchdog,
log, bootstrap.initdb) and the rules that span sections."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from raftpg.config.dynamic import CLUSTER_WIDE_PARAMETERS, RAFTPG_OWNED_PARAMETERS, DynamicConfig
from raftpg.config.model import (
    CALLBACK_EVENTS,
    LogSettings,
    PostgresSettings,
    RaftSettings,
    RestApiSettings,
    Tags,
    WatchdogSettings,
)
from raftpg.config.validation import Invalid, Report, Section, need, parse_address, parse_parameters, type_name
from raftpg.config.values import Address, Auth
from raftpg.postgres.binaries import PG_LIB_ROOT, discover_bin_dir

MIN_RAFT_PASSWORD_LENGTH = 16
DOCS_RAFT_PASSWORD = "change-me-to-a-long-random-secret"
"""The placeholder documentation uses for raft.password; refused like any other sample."""
_WEAK_PASSWORDS = frozenset(
    {"secret", "password", "changeme", "change-me", "raftpg", "postgres", "patroni", "admin",
     "letmein", "qwerty", "example", "passw", DOCS_RAFT_PASSWORD, "changemetoalongrandomsecret"}
)  # fmt: skip
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_INITDB_OPTION_RE = re.compile(r"[a-z][a-z0-9-]*")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DEFAULT_SOCKET_DIR = Path("/var/run/postgresql")

RAFT_KEYS = ("self_addr", "partner_addrs", "data_dir", "password")
RESTAPI_KEYS = (
    "listen",
    "connect_address",
    "authentication",
    "certfile",
    "keyfile",
    "cafile",
    "verify_client",
)
PG_KEYS = (
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


def parse_name(root: Section, key: str) -> str | None:
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


def parse_raft(s: Section) -> RaftSettings | None:
    self_addr = s.get_address("self_addr", required=True, connectable=True)
    partners: list[Address] = []
    raw_partners = s.raw("partner_addrs")
    if raw_partners is not None and not isinstance(raw_partners, list):
        s.problem("partner_addrs", f"must be a list of host:port, got {type_name(raw_partners)}")
    for index, item in enumerate(raw_partners if isinstance(raw_partners, list) else []):
        key = f"{s.key('partner_addrs')}[{index}]"
        if not isinstance(item, str):
            s.report.add(key, f"must be a host:port string, got {type_name(item)}")
            continue
        address = parse_address(s.report, key, item, connectable=True)
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
        return RaftSettings(need(self_addr), tuple(partners), need(data_dir), need(password))
    except Invalid:
        return None


def _parse_connect_address(s: Section, listen: Address | None) -> Address | None:
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


def _parse_auth(parent: Section, name: str, *, required: bool, password_required: bool) -> Auth | None:
    if not parent.has(name):
        if required:
            parent.problem(name, "required setting is missing")
        return None
    s = parent.section(name, ("username", "password"))
    username = s.get_str("username", required=True)
    password = s.get_str("password", required=password_required, default="")
    try:
        return Auth(need(username), need(password))
    except Invalid:
        return None


def parse_restapi(s: Section) -> RestApiSettings | None:
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
            need(listen), need(connect_address), authentication, certfile, keyfile, cafile, verify_client
        )
    except Invalid:
        return None


def parse_postgresql(s: Section) -> PostgresSettings | None:
    listen = s.get_address("listen", required=True)
    connect_address = _parse_connect_address(s, listen)
    data_dir = s.get_path("data_dir", required=True, absolute=True)
    bin_dir = s.get_path("bin_dir", absolute=True)
    if bin_dir is None and not s.has("bin_dir"):
        bin_dir = discover_bin_dir()
        if bin_dir is None:
            s.problem(
                "bin_dir",
                f"not set and no PostgreSQL found (tried pg_config --bindir and {PG_LIB_ROOT}/*/bin)",
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
    parameters = parse_parameters(s.report, s.key("parameters"), s.raw("parameters"), refused)
    try:
        return PostgresSettings(
            listen=need(listen),
            connect_address=need(connect_address),
            data_dir=need(data_dir),
            bin_dir=need(bin_dir),
            socket_dir=need(socket_dir),
            superuser=need(superuser),
            replication=need(replication),
            parameters=MappingProxyType(parameters),
            pg_hba=s.get_str_list("pg_hba"),
            callbacks=_parse_callbacks(s.section("callbacks", CALLBACK_EVENTS)),
            callback_timeout=s.get_float("callback_timeout", 30.0, 0, exclusive=True),
        )
    except Invalid:
        return None


def _parse_callbacks(s: Section) -> Mapping[str, tuple[str, ...]]:
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
            s.problem(event, f"must be a command line or a list of non-empty strings, got {type_name(value)}")
            continue
        if not argv:
            s.problem(event, "must not be empty")
            continue
        commands[event] = tuple(argv)
    return MappingProxyType(commands)


_INITDB_OWNED = frozenset({"pgdata", "d", "username", "u", "pwfile"})


def parse_initdb(report: Report, path: str, value: object) -> tuple[str, ...]:
    """Patroni's list form: "data-checksums" or {encoding: UTF8}; returned as initdb arguments."""
    if value is None:
        return ()
    if not isinstance(value, list):
        report.add(path, f"must be a list of options, got {type_name(value)}")
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
            report.add(key, f"value of {option} must be a string or number, got {type_name(arg)}")
        else:
            args.append(f"--{option}={arg}")
    return tuple(args)


def parse_watchdog(s: Section) -> WatchdogSettings:
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


def parse_log(s: Section) -> LogSettings:
    level = s.get_str("level", default="INFO") or "INFO"
    level = "WARNING" if level.upper() == "WARN" else level.upper()
    if level not in _LOG_LEVELS:
        s.problem("level", f"must be one of {', '.join(_LOG_LEVELS)}, got {s.raw('level')!r}")
        level = "INFO"
    return LogSettings(level=level, format=s.get_choice("format", ("plain", "json"), "plain"))


def cross_checks(
    report: Report,
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
