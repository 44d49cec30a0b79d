"""What raftpg writes into postgresql.conf and pg_hba.conf (pure functions, no I/O).

raftpg owns both files. initdb's postgresql.conf is kept as postgresql.base.conf and included
first, so everything rendered here wins over it; postgresql.auto.conf (ALTER SYSTEM) is still
read last by PostgreSQL. pg_hba.conf is rewritten whole, so replication and the daemon's own
superuser access never depend on hand edits.
"""

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from psycopg.conninfo import make_conninfo

from raftpg.config import CLUSTER_WIDE_PARAMETERS, RAFTPG_OWNED_PARAMETERS, Address, Auth, PostgresSettings

logger = logging.getLogger(__name__)

MANAGED_MARKER = "# Managed by raftpg"
BASE_CONF = "postgresql.base.conf"

DEFAULT_PARAMETERS: Mapping[str, str] = MappingProxyType(
    {
        "wal_level": "replica",
        "hot_standby": "on",
        "wal_log_hints": "on",
        "max_wal_senders": "10",
        "max_replication_slots": "10",
        "wal_keep_size": "128MB",
        "max_slot_wal_keep_size": "8GB",
        "hot_standby_feedback": "on",
        "wal_sender_timeout": "30s",
        "wal_receiver_timeout": "30s",
        "password_encryption": "scram-sha-256",
        # After its upstream stops, a standby retries (and notices a promote request) only after
        # this interval; PostgreSQL's 5 s default would stall every switchover by that much.
        "wal_retrieve_retry_interval": "500ms",
        # A primary releases commits waiting for a synchronous standby only on a reply from it. A
        # standby that has flushed everything replies again only after this interval, so commits
        # made before synchronous_standby_names named it wait that long: 10 s by default.
        "wal_receiver_status_interval": "1s",
    }
)

_PARAMETER_NAME = re.compile(r"[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)?")
_SLOT_FORBIDDEN = re.compile(r"[^a-z0-9_]")
_MAX_IDENTIFIER = 63  # NAMEDATALEN - 1


def parameter_name(name: str) -> str:
    """Normalise a GUC name (PostgreSQL compares them case-insensitively) and refuse junk."""
    key = name.strip().lower()
    if not _PARAMETER_NAME.fullmatch(key):
        raise ValueError(f"not a PostgreSQL parameter name: {name!r}")
    return key


@functools.cache
def _warn_ignored(source: str, name: str, reason: str) -> None:
    # Cached so a bad dynamic config does not repeat the warning every HA cycle.
    logger.warning("ignoring %s parameter %s: %s", source, name, reason)


# Set only for the moment of a promotion: the startup process notices a promote request only when
# its wait for WAL times out, so the regular interval would add up to its length to every
# switchover. Not kept for standbys: each retry forks a walreceiver and logs a connection error.
PROMOTION_PARAMETERS: Mapping[str, str] = MappingProxyType({"wal_retrieve_retry_interval": "10ms"})


def build_parameters(
    settings: PostgresSettings,
    dynamic_params: Mapping[str, str],
    *,
    synchronous_standby_names: str = "",
) -> dict[str, str]:
    """Merge parameters: raftpg defaults < dynamic < local < values raftpg owns.

    Local parameters may not change cluster-wide ones (a standby must match its primary), and
    neither source may set a parameter raftpg owns.
    """
    merged = dict(DEFAULT_PARAMETERS)
    for source, params in (("dynamic", dynamic_params), ("local", settings.parameters)):
        for name, value in params.items():
            key = parameter_name(name)
            if key in RAFTPG_OWNED_PARAMETERS:
                _warn_ignored(source, key, "raftpg sets it")
            elif source == "local" and key in CLUSTER_WIDE_PARAMETERS:
                _warn_ignored(source, key, "it must match across the cluster; set it in dynamic config")
            else:
                merged[key] = str(value)
    merged.update(
        listen_addresses=settings.listen.host,
        port=str(settings.listen.port),
        unix_socket_directories=str(settings.socket_dir),
        hot_standby="on",
        synchronous_standby_names=synchronous_standby_names,
    )
    return merged


def quote_conf_value(value: str) -> str:
    """Quote a value for postgresql.conf: single quotes doubled, backslashes escaped."""
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError(f"parameter value contains a line break or NUL: {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def unquote_conf_value(text: str) -> str:
    """Inverse of quote_conf_value (reads back values raftpg wrote)."""
    if len(text) < 2 or text[0] != "'" or text[-1] != "'":
        raise ValueError(f"not a quoted value: {text!r}")
    out: list[str] = []
    chars = iter(text[1:-1])
    for ch in chars:
        if ch in ("'", "\\"):
            nxt = next(chars, None)
            if nxt is None:
                raise ValueError(f"dangling {ch!r} in {text!r}")
            out.append(nxt)
        else:
            out.append(ch)
    return "".join(out)


def read_standby_settings(conf_text: str) -> tuple[str | None, str | None]:
    """(primary_conninfo, primary_slot_name) as rendered into a postgresql.conf by raftpg."""
    found: dict[str, str] = {}
    for line in conf_text.splitlines():
        name, sep, value = line.partition(" = ")
        if sep and name in ("primary_conninfo", "primary_slot_name"):
            found[name] = unquote_conf_value(value.strip())
    return found.get("primary_conninfo"), found.get("primary_slot_name")


def primary_conninfo(
    upstream: Address, replication: Auth, application_name: str, *, connect_timeout: int = 5
) -> str:
    """Connection string a standby streams with; keepalives notice a dead upstream quickly.

    An empty password is left out (pg_hba then decides: trust or a client certificate).
    """
    params = {"host": upstream.host, "port": str(upstream.port), "user": replication.username}
    if replication.password:
        params["password"] = replication.password
    params.update(
        application_name=application_name,
        connect_timeout=str(connect_timeout),
        keepalives="1",
        keepalives_idle="5",
        keepalives_interval="2",
        keepalives_count="3",
    )
    return make_conninfo("", **params)


def render_postgresql_conf(
    parameters: Mapping[str, str],
    *,
    primary_conninfo: str | None = None,
    primary_slot_name: str | None = None,
) -> str:
    """The whole postgresql.conf: include initdb's original first, then our parameters."""
    lines = [
        f"{MANAGED_MARKER}: rewritten on every start and reload; change raftpg's configuration instead.",
        f"include_if_exists {quote_conf_value(BASE_CONF)}",
    ]
    for name in sorted(parameters, key=parameter_name):
        key = parameter_name(name)
        if key in ("primary_conninfo", "primary_slot_name"):
            raise ValueError(f"{key} is rendered from the upstream, not passed as a parameter")
        lines.append(f"{key} = {quote_conf_value(parameters[name])}")
    if primary_conninfo is not None:
        lines.append(f"primary_conninfo = {quote_conf_value(primary_conninfo)}")
    if primary_slot_name is not None:
        lines.append(f"primary_slot_name = {quote_conf_value(primary_slot_name)}")
    return "\n".join(lines) + "\n"


def _hba_name(name: str) -> str:
    if not name or any(ch in name for ch in '"\r\n\0'):
        raise ValueError(f"role name cannot be written to pg_hba.conf: {name!r}")
    return f'"{name}"'


def render_pg_hba(superuser: Auth, replication: Auth, extra_lines: Sequence[str] = ()) -> str:
    """pg_hba.conf: raftpg's own access first (first match wins), then the user's lines.

    The superuser needs the unix socket (the daemon) and TCP (pg_rewind from peers); the
    replication role needs TCP replication. Everything else is password-only. A role with an
    empty password gets no password line: the superuser then uses peer authentication locally
    (the daemon runs as the OS user of that name) and extra_lines decide remote access.
    """
    su = _hba_name(superuser.username)
    repl = _hba_name(replication.username)
    for line in extra_lines:
        if any(ch in line for ch in "\r\n\0"):
            raise ValueError(f"pg_hba line contains a line break or NUL: {line!r}")
    local_method = "scram-sha-256" if superuser.password else "peer"
    lines = [
        f"{MANAGED_MARKER}: rewritten on every start and reload; change raftpg's configuration instead.",
        f"local all {su} {local_method}",
        f"local replication {su} {local_method}",
    ]
    if replication.password:
        lines.append(f"host replication {repl} all scram-sha-256")
    if superuser.password:
        lines.append(f"host all {su} all scram-sha-256")
    lines += [*extra_lines, "local all all scram-sha-256", "host all all all scram-sha-256"]
    return "\n".join(lines) + "\n"


def render_locked_pg_hba(superuser: Auth) -> str:
    """pg_hba.conf that lets in only the daemon over the unix socket: a primary started in place
    runs with it until its fence is armed (DESIGN rule 1), so no client can write to a primary
    that no fence guards yet, even if raftpg dies in between."""
    su = _hba_name(superuser.username)
    method = "scram-sha-256" if superuser.password else "peer"
    return "\n".join([f"{MANAGED_MARKER}: locked until the fence guards this primary.",
                      f"local all {su} {method}"]) + "\n"


def slot_name_for(member: str) -> str:
    """Physical slot name of a member: lower case, anything outside [a-z0-9_] becomes '_'."""
    name = _SLOT_FORBIDDEN.sub("_", member.lower())[:_MAX_IDENTIFIER]
    if not name:
        raise ValueError("member name is empty")
    return name
