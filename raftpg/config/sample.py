"""The commented sample configuration `raftpg config sample` prints, with fresh random secrets."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from pathlib import Path

from raftpg.config.dynamic import MIN_TTL
from raftpg.config.values import Address
from raftpg.postgres.binaries import discover_bin_dir


def generate_raft_password() -> str:
    """43 URL-safe random characters (256 bits)."""
    return secrets.token_urlsafe(32)


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
