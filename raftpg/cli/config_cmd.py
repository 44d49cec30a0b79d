"""`raftpg config secrets` and `raftpg config init`: configuration without editing YAML by hand."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from raftpg.cli.cluster_secrets import FILE_MODE, ClusterSecrets, SecretsError
from raftpg.cli.node_init import (
    DEFAULT_API_PORT,
    DEFAULT_DATA_DIR,
    DEFAULT_PG_PORT,
    DEFAULT_RAFT_DIR,
    DEFAULT_RAFT_PORT,
    DEFAULT_TTL,
    NodeInit,
    peers_problem,
    render,
    split_peers,
    write_new,
)
from raftpg.config import ConfigError, WitnessSettings

DEFAULT_CONFIG_PATH = Path("/etc/raftpg/node.yml")


def cmd_secrets(args: argparse.Namespace) -> int:
    text = ClusterSecrets.generate().to_yaml()
    if args.output is None:
        sys.stdout.write(text)
        if sys.stdout.isatty():
            print("\n(redirect it to a file: (umask 077; raftpg config secrets > cluster-secrets.yml))",
                  file=sys.stderr)
        return 0
    try:
        write_new(args.output, text, force=args.force)
    except (FileExistsError, OSError) as exc:
        print(f"raftpg config secrets: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} (mode {FILE_MODE:o}); copy it to every host, run `raftpg config init` there, "
          "then delete it", file=sys.stderr)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    peers = split_peers(args.peers)
    problem = peers_problem(args.self_host, peers)
    if problem is not None:
        print(f"raftpg config init: {problem}", file=sys.stderr)
        return 2
    try:
        secrets = ClusterSecrets.load(args.secrets)
    except SecretsError as exc:
        print(f"raftpg config init: {exc}", file=sys.stderr)
        return 2
    mode = args.secrets.stat().st_mode & 0o077
    if mode:
        print(f"warning: {args.secrets} is readable by group or others (mode {args.secrets.stat().st_mode & 0o777:o}); "
              f"chmod 600 it", file=sys.stderr)
    init = NodeInit(
        scope=args.scope, name=args.name, self_host=args.self_host, peers=peers, secrets=secrets,
        data_dir=args.data_dir, raft_dir=args.raft_dir, bin_dir=args.bin_dir, socket_dir=args.socket_dir,
        raft_port=args.raft_port, api_port=args.api_port, pg_port=args.pg_port, ttl=args.ttl,
        synchronous_mode=args.synchronous_mode, witness=args.witness,
    )
    try:
        text, settings = render(init)
    except ConfigError as exc:
        print(f"raftpg config init: the configuration would be invalid ({len(exc.problems)} problem(s)):",
              file=sys.stderr)
        for line in exc.problems:
            print(f"  - {line}", file=sys.stderr)
        return 2
    output: Path = args.output
    try:
        write_new(output, text, force=args.force)
    except (FileExistsError, OSError) as exc:
        print(f"raftpg config init: {exc}", file=sys.stderr)
        return 1
    if isinstance(settings, WitnessSettings):
        database = "no PostgreSQL (witness: a Raft vote only)"
    else:
        database = f"PostgreSQL {settings.postgresql.connect_address} (data {settings.postgresql.data_dir})"
    print(f"wrote {output} for member {settings.name} of {settings.scope}: Raft {settings.raft.self_addr}, "
          f"REST API {settings.restapi.connect_address}, {database}")
    if os.geteuid() == 0:
        print(f"it is owned by root: chown it to the database OS user, e.g. chown postgres: {output}",
              file=sys.stderr)
    return 0


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range 1-65535")
    return value


def _absolute(text: str) -> Path:
    path = Path(text)
    if not path.is_absolute():
        raise argparse.ArgumentTypeError(f"{text!r} must be an absolute path")
    return path


def register(config_sub: Any) -> None:
    """Add `secrets` and `init` to the `raftpg config` subcommands."""
    secrets = config_sub.add_parser(
        "secrets", help="print fresh cluster secrets (Raft password, REST and PostgreSQL credentials) as YAML")
    secrets.add_argument("-o", "--output", type=Path, default=None,
                         help=f"write to this file (mode {FILE_MODE:o}) instead of standard output")
    secrets.add_argument("--force", action="store_true", help="replace an existing --output file")
    secrets.set_defaults(func=cmd_secrets)

    init = config_sub.add_parser("init", help="write this node's configuration from its address, its peers and "
                                              "the cluster secrets (validated before it is written)")
    init.add_argument("--scope", required=True, help="cluster name, the same on every member")
    init.add_argument("--name", required=True, help="this member's name, unique in the cluster")
    init.add_argument("--self", dest="self_host", required=True, metavar="ADDR",
                      help="this host's address as the other members reach it (HOST or HOST:RAFT_PORT)")
    init.add_argument("--peers", required=True, metavar="A,B",
                      help="the other members' addresses, comma-separated (HOST or HOST:RAFT_PORT)")
    init.add_argument("--secrets", type=Path, required=True, help="file written by `raftpg config secrets`")
    init.add_argument("-o", "--output", type=Path, default=DEFAULT_CONFIG_PATH,
                      help=f"where to write it (default {DEFAULT_CONFIG_PATH})")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.add_argument("--data-dir", type=_absolute, default=DEFAULT_DATA_DIR,
                      help=f"PostgreSQL data directory (default {DEFAULT_DATA_DIR})")
    init.add_argument("--raft-dir", type=_absolute, default=DEFAULT_RAFT_DIR,
                      help=f"Raft journal directory (default {DEFAULT_RAFT_DIR})")
    init.add_argument("--bin-dir", type=_absolute, default=None,
                      help="PostgreSQL programs (default: discovered when raftpg starts)")
    init.add_argument("--socket-dir", type=_absolute, default=None,
                      help="PostgreSQL unix socket directory (default /var/run/postgresql)")
    init.add_argument("--raft-port", type=_port, default=DEFAULT_RAFT_PORT)
    init.add_argument("--api-port", type=_port, default=DEFAULT_API_PORT)
    init.add_argument("--pg-port", type=_port, default=DEFAULT_PG_PORT)
    init.add_argument("--ttl", type=float, default=DEFAULT_TTL, help="leader lease in seconds (default 10)")
    init.add_argument("--synchronous-mode", choices=("off", "on", "quorum"), default="quorum",
                      help="replication mode (default quorum: failover loses no acknowledged write)")
    init.add_argument("--witness", action="store_true",
                      help="a witness member: a Raft vote and the REST API, no PostgreSQL (the PostgreSQL "
                           "options are then ignored); use the same --ttl and --synchronous-mode as the others")
    init.set_defaults(func=cmd_init)
