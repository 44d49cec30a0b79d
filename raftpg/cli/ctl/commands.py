"""`raftpg ctl`: the operator's tool, like patronictl, over the REST API only (it never joins Raft).

This module declares the command line and the read-only verbs (list, topology, show-config,
history, dsn, version, members); verbs that change the cluster live in actions.py. Every
verb is a function (session, args) -> exit code: 0 success, 1 refused or failed, 2 usage.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

from raftpg import __version__
from raftpg.cli.ctl import actions, rolling
from raftpg.cli.ctl.client import ApiError, CtlError, Unreachable, UsageError
from raftpg.cli.ctl.formatting import (
    HISTORY_COLUMNS,
    MEMBER_COLUMNS,
    cell_text,
    cluster_footer,
    cluster_table,
    dsn,
    dump_json,
    dump_yaml,
    extra_columns,
    history_records,
    history_table,
    list_records,
    member_record,
    problem_lines,
    reinit_lines,
    render_grid,
    version_line,
)
from raftpg.cli.ctl.model import ClusterView, HistoryEntry, MemberView
from raftpg.cli.ctl.rolling_record import in_progress
from raftpg.cli.ctl.session import PASSWORD_ENV, USER_ENV, Session, open_session
from raftpg.http.client import DEFAULT_TIMEOUT

logger = logging.getLogger(__name__)

Handler = Callable[[Session, argparse.Namespace], int]
FORMATS = ("pretty", "tsv", "json", "yaml")
ROLES = ("primary", "leader", "replica", "standby", "any")


def run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Wrap a verb: build the session, turn every expected failure into a red message + exit code."""

    def wrapped(args: argparse.Namespace) -> int:
        session: Session | None = None
        try:
            session = open_session(args)
            return handler(session, args)
        except UsageError as exc:
            _report(session, f"Error: {exc}")
            return 2
        except CtlError as exc:
            _report(session, f"Error: {exc}")
            return 1
        except KeyboardInterrupt:
            _report(session, "interrupted")
            return 130

    return wrapped


def _report(session: Session | None, message: str) -> None:
    if session is not None:
        session.error(message)
    else:
        from rich.console import Console
        from rich.text import Text

        Console(stderr=True, highlight=False, soft_wrap=True).print(Text(message, style="red"))


# -- read-only verbs ------------------------------------------------------------------------------


def print_cluster(session: Session, cluster: ClusterView, fmt: str = "pretty", *, extended: bool = False,
                  topology: bool = False, problems: bool = False) -> None:
    """`problems`: also ask every member's /patroni for connection problems (pretty format only)."""
    if fmt == "json":
        session.print(dump_json(list_records(cluster)))
    elif fmt == "yaml":
        session.print(dump_yaml(list_records(cluster)).rstrip("\n"))
    elif fmt == "tsv":
        headers = ("Cluster", *MEMBER_COLUMNS, *extra_columns(cluster, extended))
        session.print("\t".join(headers))
        for member in cluster.members:
            record = member_record(cluster, member, extended=True)
            session.print("\t".join(cell_text(record.get(h)) for h in headers))
    else:
        session.print(cluster_table(cluster, extended=extended, topology=topology))
        for line in cluster_footer(cluster):
            session.print(line)
        for line in problem_lines(session.connection_problems(cluster) if problems else ()):
            session.print(line, style="yellow")
        for line in reinit_lines(cluster):
            session.print(line, style="yellow")


def cmd_list(session: Session, args: argparse.Namespace) -> int:
    topology = args.verb == "topology"
    interval = args.watch if args.watch is not None else (1.0 if args.W else None)
    shown = 0
    try:
        while True:
            try:
                cluster = session.cluster(system_id=args.format == "pretty")
            except CtlError as exc:
                if interval is None:
                    raise
                session.error(f"Error: {exc}")
            else:
                if interval is not None and session.out.is_terminal:
                    session.out.clear()
                if args.timestamp or interval is not None:
                    session.print(time.strftime("%Y-%m-%d %H:%M:%S"))
                print_cluster(session, cluster, args.format, extended=args.extended, topology=topology,
                              problems=True)
                operation = in_progress(session, time.time()) if args.format == "pretty" else None
                if operation is not None:
                    session.print(f"In progress: {operation}", style="yellow")
            shown += 1
            if interval is None or (args.watch_count is not None and shown >= args.watch_count):
                return 0
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


def cmd_show_config(session: Session, args: argparse.Namespace) -> int:
    config = session.get("config").body
    if not isinstance(config, dict):
        raise CtlError(f"GET /config did not answer a JSON object: {config!r}")
    session.print(dump_json(config) if args.format == "json" else dump_yaml(config).rstrip("\n"))
    return 0


def cmd_history(session: Session, args: argparse.Namespace) -> int:
    body = session.get("history").body
    if not isinstance(body, list):
        raise CtlError(f"GET /history did not answer a JSON array: {body!r}")
    entries = [HistoryEntry.from_json(row) for row in body]
    if args.format == "json":
        session.print(dump_json(history_records(entries)))
    elif args.format == "yaml":
        session.print(dump_yaml(history_records(entries)).rstrip("\n"))
    elif args.format == "tsv":
        session.print("\t".join(HISTORY_COLUMNS))
        for record in history_records(entries):
            session.print("\t".join(cell_text(record[h]) for h in HISTORY_COLUMNS))
    else:
        session.print(history_table(entries))
    return 0


def pick_member(cluster: ClusterView, role: str, name: str | None) -> MemberView:
    """A member by name, else by role; the primary is preferred for "any" (as patronictl does)."""
    if name is not None:
        member = cluster.member(name)
        if member is None:
            raise CtlError(f"{name} is not a member of cluster {cluster.scope}")
        return member
    leader = cluster.leader
    replicas = [m for m in cluster.members if not m.is_leader]
    running = [m for m in replicas if m.state in ("running", "streaming")]
    replica = (running or replicas)[0] if replicas else None
    if role in ("primary", "leader"):
        found = leader
    elif role in ("replica", "standby"):
        found = replica
    else:
        found = leader or replica
    if found is None:
        raise CtlError(f"no member with role {role} in cluster {cluster.scope}")
    return found


def cmd_dsn(session: Session, args: argparse.Namespace) -> int:
    if args.member_arg and args.member and args.member_arg != args.member:
        raise UsageError("give the member once (positional or --member)")
    cluster = session.cluster()
    member = pick_member(cluster, args.role, args.member or args.member_arg)
    user = args.username or (session.settings.postgresql.superuser.username if session.settings else None)
    text = dsn(member, user)
    if not text:
        raise CtlError(f"member {member.name} publishes no PostgreSQL address")
    session.print(text)
    return 0


def cmd_version(session: Session, args: argparse.Namespace) -> int:
    session.print(f"raftpg ctl version {__version__}")
    if not session.configured:
        return 0
    cluster = session.cluster()
    members = session.find_members(cluster, args.members)
    session.print("")
    failed = False
    for member in members:
        try:
            session.print(version_line(member.name, session.member_status(member)))
        except CtlError as exc:
            session.error(f"{member.name}: {exc}")
            failed = True
    return 1 if failed else 0


def _raft_member_names(session: Session, cluster: ClusterView) -> dict[str, str]:
    """Raft address -> member name, from each member's /patroni (best effort, short timeouts)."""
    names: dict[str, str] = {}
    for member in cluster.members:
        try:
            status = session.member_status(member, timeout=min(2.0, session.client.timeout))
        except CtlError:
            continue
        own = status.get("raftpg")
        raft = own.get("raft") if isinstance(own, dict) else None
        if isinstance(raft, dict) and raft.get("self_addr"):
            names[str(raft["self_addr"])] = member.name
    return names


def cmd_members(session: Session, args: argparse.Namespace) -> int:
    if args.members_verb in ("add", "remove"):
        return actions.cmd_members_change(session, args)
    raft = session.get("raft").body
    if not isinstance(raft, dict):
        raise CtlError(f"GET /raft did not answer a JSON object: {raft!r}")
    try:
        cluster: ClusterView | None = session.cluster()
    except (ApiError, Unreachable):
        cluster = None
    names = _raft_member_names(session, cluster) if cluster is not None else {}
    records = members_records(raft, names)
    if args.format == "json":
        session.print(dump_json(records))
    elif args.format == "yaml":
        session.print(dump_yaml(records).rstrip("\n"))
    else:
        headers = ("Raft address", "Member", "Raft role", "Connected")
        session.print(render_grid(headers, [[r.get(h) for h in headers] for r in records],
                                  f"Raft: term {raft.get('term', '?')}, commit index {raft.get('commit_index', '?')}"))
        if raft.get("has_quorum") is False:
            session.print(" This node sees no Raft quorum", style="red")
    return 0


def members_records(raft: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    """One record per Raft voter: this node (self_addr) and its partners, as GET /raft lists them."""
    leader = raft.get("leader")
    partners = raft.get("partners")
    connected: dict[str, Any] = dict(partners) if isinstance(partners, dict) else {
        str(p): None for p in (partners if isinstance(partners, list) else [])}
    addrs = ([str(raft["self_addr"])] if raft.get("self_addr") else []) + sorted(connected)
    records = []
    for addr in addrs:
        is_self = addr == raft.get("self_addr")
        state = connected.get(addr)
        records.append({
            "Raft address": addr,
            "Member": names.get(addr),
            "Raft role": "Leader" if addr == leader else "Follower",
            "Connected": "self" if is_self else ("yes" if state is True else "no" if state is False else state),
        })
    return records


# -- the command line -----------------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Connection options, accepted before the verb (real defaults) and after it (SUPPRESS)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection")
    group.add_argument("-c", "--config", default=default(None), metavar="FILE",
                       help="node configuration (its restapi section says where and how to connect)")
    group.add_argument("--api", action="append", default=default(None), metavar="URL",
                       help="REST API URL of a member (repeatable; the first that answers is used)")
    group.add_argument("--user", default=default(None), help=f"REST API user (or ${USER_ENV})")
    group.add_argument("--password", default=default(None), help=f"REST API password (or ${PASSWORD_ENV})")
    group.add_argument("--cafile", default=default(None), metavar="FILE", help="CA to verify the API's TLS certificate")
    group.add_argument("-k", "--insecure", action="store_true", default=default(False),
                       help="do not verify the API's TLS certificate")
    group.add_argument("--timeout", type=float, default=default(DEFAULT_TIMEOUT), metavar="SECONDS",
                       help=f"timeout of each HTTP request (default {DEFAULT_TIMEOUT:g})")


def _verb(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    _connection_options(parser, suppress=True)
    parser.set_defaults(func=run(handler), verb=name)
    return parser


def _format_option(parser: argparse.ArgumentParser, choices: tuple[str, ...] = FORMATS,
                   default: str = "pretty") -> None:
    parser.add_argument("-f", "--format", choices=choices, default=default, help=f"output format (default {default})")


def _wait_options(parser: argparse.ArgumentParser, default: float) -> None:
    parser.add_argument("--wait-timeout", type=float, default=default, metavar="SECONDS",
                        help=f"how long to wait for the cluster to get there (default {default:g})")


def register(sub: Any) -> None:
    """Add the `ctl` command and its verbs to the top-level `raftpg` subparsers."""
    ctl = sub.add_parser("ctl", help="operate a running cluster over its REST API (like patronictl)",
                         description="Operate a running raftpg cluster through its REST API (never joins Raft). "
                                     "Connection options go before or after the verb.")
    _connection_options(ctl, suppress=False)
    verbs = ctl.add_subparsers(dest="verb", required=True, metavar="VERB")

    for name, help_text in (("list", "show the cluster's members"),
                            ("topology", "show the members as a replication tree")):
        p = _verb(verbs, name, cmd_list, help_text)
        p.add_argument("-e", "--extended", action="store_true",
                       help="add the Pending restart, Scheduled restart and Tags columns")
        p.add_argument("-t", "--timestamp", action="store_true", help="print the time before the table")
        _format_option(p)
        p.add_argument("-W", action="store_true", help="refresh every second until Ctrl-C")
        p.add_argument("-w", "--watch", type=float, metavar="SECONDS", help="refresh at this interval until Ctrl-C")
        p.add_argument("--watch-count", type=int, metavar="N", help="stop watching after N refreshes")

    p = _verb(verbs, "show-config", cmd_show_config, "print the dynamic configuration")
    _format_option(p, ("yaml", "json"), "yaml")

    p = _verb(verbs, "edit-config", actions.cmd_edit_config, "change the dynamic configuration")
    p.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a dotted key to a YAML value (null deletes); repeatable")
    p.add_argument("-p", "--pg", action="append", default=[], metavar="PARAM=VALUE",
                   help="set postgresql.parameters.PARAM (null deletes); repeatable")
    p.add_argument("--apply", metavar="FILE", help="merge this YAML file into the configuration (- for stdin)")
    p.add_argument("--replace", metavar="FILE",
                   help="replace the whole configuration with this YAML file (- for stdin)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not show the diff")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")

    p = _verb(verbs, "switchover", actions.cmd_switchover, "hand the primary role to a healthy replica")
    p.add_argument("--leader", "--primary", dest="leader", help="the current leader (checked)")
    p.add_argument("--candidate", help="the member to promote (default: the cluster picks)")
    p.add_argument("--scheduled", metavar="TIME", help='ISO 8601 time (e.g. 2030-01-01T12:00+00:00) or "now"')
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    _wait_options(p, 60.0)

    p = _verb(verbs, "failover", actions.cmd_failover, "promote a chosen member, with or without a leader")
    p.add_argument("--leader", "--primary", dest="leader", help="the current leader (makes it a switchover)")
    p.add_argument("--candidate", help="the member to promote (required without a terminal)")
    p.add_argument("--accept-data-loss", action="store_true",
                   help="allow a candidate outside the synchronous set (it may lack acknowledged writes)")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    _wait_options(p, 60.0)

    p = _verb(verbs, "restart", actions.cmd_restart, "restart PostgreSQL on members (all when none named)")
    p.add_argument("members", nargs="*", metavar="MEMBER")
    p.add_argument("-r", "--role", choices=ROLES, default="any", help="only members with this role")
    p.add_argument("--pending", action="store_true", help="only members flagged Pending restart")
    p.add_argument("--scheduled", metavar="TIME", help='ISO 8601 time or "now"')
    p.add_argument("--pg-version", metavar="VERSION", help="only members running an older PostgreSQL")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    _wait_options(p, 120.0)

    p = _verb(verbs, "reload", actions.cmd_reload, "reload the configuration of members (all when none named)")
    p.add_argument("members", nargs="*", metavar="MEMBER")
    p.add_argument("-r", "--role", choices=ROLES, default="any", help="only members with this role")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")

    p = _verb(verbs, "reinit", actions.cmd_reinit, "rebuild replicas from the primary")
    p.add_argument("members", nargs="+", metavar="MEMBER")
    p.add_argument("--wait", action="store_true", help="wait until the rebuilt members are running")
    p.add_argument("--force", action="store_true",
                   help="do not ask for confirmation; reinitialize even a member busy starting, rewinding or cloning")
    _wait_options(p, 600.0)

    p = _verb(verbs, "flush", actions.cmd_flush, "cancel a scheduled restart or switchover")
    p.add_argument("target", choices=("restart", "switchover"))
    p.add_argument("members", nargs="*", metavar="MEMBER", help="members whose scheduled restart to cancel")
    p.add_argument("-r", "--role", choices=ROLES, default="any", help="only members with this role")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")

    for name, help_text in (("pause", "maintenance mode: stop automatic failover and restarts"),
                            ("resume", "leave maintenance mode")):
        p = _verb(verbs, name, actions.cmd_pause, help_text)
        p.add_argument("--wait", action="store_true", help="wait until every member reports it")
        _wait_options(p, 30.0)

    rolling.register(verbs, _verb)

    p = _verb(verbs, "history", cmd_history, "show the failover and switchover history")
    _format_option(p)

    p = _verb(verbs, "members", cmd_members, "show or change the Raft voters")
    _format_option(p, ("pretty", "json", "yaml"))
    changes = p.add_subparsers(dest="members_verb", metavar="{add,remove}")
    for name, help_text in (("add", "add a Raft voter (host:port of its Raft endpoint)"),
                            ("remove", "remove a Raft voter (host:port of its Raft endpoint)")):
        q = changes.add_parser(name, help=help_text, description=help_text)
        q.add_argument("addr", metavar="ADDR")
        q.add_argument("--force", action="store_true", help="do not ask for confirmation")

    p = _verb(verbs, "dsn", cmd_dsn, "print a libpq connection string for a member")
    p.add_argument("member_arg", nargs="?", metavar="MEMBER")
    p.add_argument("-m", "--member", help="the member (instead of the positional MEMBER)")
    p.add_argument("-r", "--role", choices=ROLES, default="any", help="pick a member with this role")
    p.add_argument("-U", "--username", help="user in the DSN (default: the superuser of -c FILE)")

    p = _verb(verbs, "version", cmd_version, "print ctl's version and each member's")
    p.add_argument("members", nargs="*", metavar="MEMBER")
