"""The `raftpg` command: run (the daemon), rejoin, ctl, demo, config, certs, systemd-unit, version."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence

from raftpg import __version__
from raftpg.config import ConfigError, Settings, WitnessSettings, load_member_settings, sample_config
from raftpg.fence.protocol import SUBCOMMAND as FENCE_COMMAND

DAEMON_COMMANDS = ("run", "rejoin")
"""Parsed without the operator tools' modules (ctl, demo, certs, rich ...): a node's daemon would
carry them for its whole life, about 4 MiB of RSS and a hundred modules."""


def _cmd_run(args: argparse.Namespace) -> int:
    from raftpg.cli.daemon import run_daemon
    from raftpg.cli.logs import setup_logging

    settings = _load_or_explain(args.config)
    if settings is None:
        return 2
    if isinstance(settings, WitnessSettings):
        return _run_witness(settings, args)
    if args.recover_quorum:
        if not args.force:
            print("--recover-quorum makes this node a Raft cluster of one, keeping its copy of the state.\n"
                  "Only do this when the other members are lost for good (a majority that is merely cut\n"
                  "off may have moved on without this node). Repeat with --force to proceed.", file=sys.stderr)
            return 2
        settings = dataclasses.replace(settings, raft=dataclasses.replace(settings.raft, partner_addrs=()))
    setup_logging(settings.log, settings.name)
    if args.recover_quorum:
        logging.getLogger("raftpg").warning(
            "quorum recovery: running as a one-member Raft cluster from this node's state; afterwards "
            "run `raftpg rejoin` on each returning member, restart this node with its normal "
            "configuration, then start them")
    return asyncio.run(run_daemon(settings))


def _run_witness(settings: WitnessSettings, args: argparse.Namespace) -> int:
    from raftpg.cli.logs import setup_logging
    from raftpg.cli.witness import run_witness

    if args.recover_quorum:
        print("--recover-quorum restarts the cluster from a database member's state; a witness has no "
              "PostgreSQL to carry on with (README 'Losing quorum')", file=sys.stderr)
        return 2
    setup_logging(settings.log, settings.name)
    return asyncio.run(run_witness(settings))


def _cmd_rejoin(args: argparse.Namespace) -> int:
    import os

    from raftpg.cli.startup import StartupError, lock_data_dir
    from raftpg.consensus import rejoin

    settings = _load_or_explain(args.config)
    if settings is None:
        return 2
    if os.geteuid() == 0:
        print("run this as the database OS user (the one raftpg runs as), not root", file=sys.stderr)
        return 2
    data_dir = settings.raft.data_dir
    try:
        lock = lock_data_dir(data_dir)
    except StartupError as exc:
        print(f"{exc}: stop it first", file=sys.stderr)
        return 1
    with lock:
        removed = rejoin.wipe_and_mark(data_dir)
    print(f"{settings.name}: removed {len(removed)} Raft log file(s) from {data_dir}; on its next start this node "
          "copies the log from the other members and stands for Raft election only once it has it. "
          "Its PostgreSQL data directory is untouched.")
    return 0


def _cmd_config_validate(args: argparse.Namespace) -> int:
    try:
        settings = load_member_settings(args.file)
    except ConfigError as exc:
        _print_problems(args.file, exc)
        return 1
    kind = "witness member" if isinstance(settings, WitnessSettings) else "member"
    print(f"{args.file}: valid (scope {settings.scope}, {kind} {settings.name})")
    return 0


def _cmd_config_sample(args: argparse.Namespace) -> int:
    sys.stdout.write(sample_config(name=args.name))
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"raftpg {__version__}")
    return 0


def _load_or_explain(path: str) -> Settings | WitnessSettings | None:
    try:
        return load_member_settings(path)
    except ConfigError as exc:
        _print_problems(path, exc)
        return None


def _print_problems(path: str, exc: ConfigError) -> None:
    print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)


def build_parser(*, tools: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftpg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the raftpg daemon for one node (foreground)")
    run.add_argument("-c", "--config", required=True, help="node configuration file (YAML)")
    run.add_argument("--recover-quorum", action="store_true",
                     help="after losing the Raft majority for good: run as a one-member cluster from this "
                          "node's state (needs --force; see README 'Losing quorum')")
    run.add_argument("--force", action="store_true", help="confirm --recover-quorum")
    run.set_defaults(func=_cmd_run)

    rejoin = sub.add_parser("rejoin", help="wipe this stopped node's Raft log so that it rejoins from the others "
                                           "(after a quorum recovery; see README 'Losing quorum')")
    rejoin.add_argument("-c", "--config", required=True, help="node configuration file (YAML)")
    rejoin.set_defaults(func=_cmd_rejoin)

    config = sub.add_parser("config", help="write, validate or sample a configuration; generate cluster secrets")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", help="check a configuration file; non-zero exit on problems")
    validate.add_argument("file")
    validate.set_defaults(func=_cmd_config_validate)
    sample = config_sub.add_parser("sample", help="print a commented sample with a fresh Raft password")
    sample.add_argument("--name", default="node1")
    sample.set_defaults(func=_cmd_config_sample)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    if not tools:
        return parser

    from raftpg.cli import certs_cmd, config_cmd, demo, systemd_unit
    from raftpg.cli.ctl import commands as ctl

    config_cmd.register(config_sub)
    ctl.register(sub)
    demo.register(sub)
    sub.choices["demo"].add_argument("--tls", action="store_true",
                                     help="serve the REST API over HTTPS with a demo CA and per-node certificates")
    certs_cmd.register(sub)
    systemd_unit.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == [FENCE_COMMAND]:
        # Hidden: the fence helper process (`raftpg fence`). The single-file build dispatches it
        # earlier, in packaging/entry.py, before this module's imports.
        from raftpg.fence.process import main as fence_main

        return fence_main(args_list[1:])
    parser = build_parser(tools=not args_list or args_list[0] not in DAEMON_COMMANDS)
    args = parser.parse_args(args_list)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
