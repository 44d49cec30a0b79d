"""`raftpg ctl` verbs that change the cluster: switchover, failover, restart, reload, reinit,
flush, pause/resume, edit-config and Raft membership.

Each one shows what it is about to do, asks (unless --force; never without a terminal), sends
one request per target, and reports every target's answer. Cluster-wide requests go to any
node (they go through Raft there); member requests go to that member's own API.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text

from raftpg.cli.ctl.client import ApiError, CtlError, Response, UsageError
from raftpg.cli.ctl.config_edit import load_mapping, parse_assignment, set_path
from raftpg.cli.ctl.formatting import cluster_footer, cluster_table, config_diff, dump_yaml
from raftpg.cli.ctl.model import ClusterView, MemberView
from raftpg.cli.ctl.session import Session
from raftpg.config import Address
from raftpg.mergepatch import apply_patch, make_patch
from raftpg.poll import wait_until

POLL_INTERVAL = 0.5
ROLE_ALIASES = {"leader": "primary", "standby": "replica"}


def now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def parse_when(text: str | None) -> str | None:
    """An ISO 8601 time (a missing zone means local time) as text; None for "now"."""
    if text is None or text.strip().lower() in ("", "now"):
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 time (e.g. 2030-01-01T12:00+00:00) nor \"now\"") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.isoformat()


def _ask_when(session: Session, args: argparse.Namespace, action: str) -> str | None:
    if args.scheduled is None and session.interactive and not args.force:
        return parse_when(session.ask(f"When should the {action} take place (e.g. 2030-01-01T12:00+00:00)",
                                      default="now"))
    return parse_when(args.scheduled)


def show_cluster(session: Session, cluster: ClusterView, heading: str | None = None) -> None:
    if heading:
        session.print(heading)
    session.print(cluster_table(cluster))
    for line in cluster_footer(cluster):
        session.print(line)


def wait_for(session: Session, what: str, timeout: float, check: Callable[[], bool]) -> None:
    """Poll `check` (API errors count as "not yet": nodes may be restarting) until true or timeout."""
    def settled() -> bool:
        try:
            return check()
        except CtlError:
            return False

    with session.out.status(f"Waiting for {what} ..."):
        if not wait_until(settled, timeout, POLL_INTERVAL):
            raise CtlError(f"{what}: not seen within {timeout:g}s; check with `raftpg ctl list`")


def _select(session: Session, cluster: ClusterView, names: list[str], role: str) -> list[MemberView]:
    members = session.find_members(cluster, names)
    role = ROLE_ALIASES.get(role, role)
    if role == "primary":
        members = [m for m in members if m.is_leader]
    elif role == "replica":
        members = [m for m in members if not m.is_leader]
    return members


# -- switchover / failover ------------------------------------------------------------------------


def cmd_switchover(session: Session, args: argparse.Namespace) -> int:
    cluster = session.cluster(system_id=True)
    leader = cluster.leader
    if leader is None:
        raise CtlError(f"cluster {cluster.scope} has no leader; use `raftpg ctl failover --candidate MEMBER`")
    if args.leader is not None and args.leader != leader.name:
        raise CtlError(f"{args.leader} is not the leader of cluster {cluster.scope} (the leader is {leader.name})")
    replicas = [m.name for m in cluster.members if not m.is_leader]
    candidate = args.candidate
    if candidate is None and session.interactive and not args.force:
        candidate = session.ask(f"Candidate {replicas} (empty: the cluster picks)", default="") or None
    if candidate is not None:
        if candidate == leader.name:
            raise CtlError("switchover target and source are the same")
        if cluster.member(candidate) is None:
            raise CtlError(f"{candidate} is not a member of cluster {cluster.scope}")
    when = _ask_when(session, args, "switchover")
    show_cluster(session, cluster, "Current cluster topology")
    question = f"Are you sure you want to switchover cluster {cluster.scope}, demoting current leader {leader.name}?"
    if when is not None:
        question = (f"Are you sure you want to schedule a switchover of cluster {cluster.scope} at {when}, "
                    f"demoting current leader {leader.name}?")
    session.confirm(args.force, question)
    body: dict[str, Any] = {"leader": leader.name}
    if candidate is not None:
        body["candidate"] = candidate
    if when is not None:
        body["scheduled_at"] = when
    return _hand_over(session, "switchover", body, leader.name, candidate, args.wait_timeout,
                      scheduled=when is not None)


def cmd_failover(session: Session, args: argparse.Namespace) -> int:
    cluster = session.cluster(system_id=True)
    leader = cluster.leader
    if args.leader is not None and (leader is None or args.leader != leader.name):
        raise CtlError(f"{args.leader} is not the leader of cluster {cluster.scope}")
    candidates = [m.name for m in cluster.members if not m.is_leader]
    candidate = args.candidate
    if candidate is None:
        if not session.interactive:
            raise UsageError("--candidate is required when stdin is not a terminal")
        candidate = session.ask(f"Candidate {candidates}", choices=candidates)
    if cluster.member(candidate) is None:
        raise CtlError(f"{candidate} is not a member of cluster {cluster.scope}")
    if leader is not None and candidate == leader.name:
        raise CtlError(f"{candidate} is already the leader")
    show_cluster(session, cluster, "Current cluster topology")
    question = f"Are you sure you want to failover cluster {cluster.scope}?"
    if leader is not None:
        question = f"Are you sure you want to failover cluster {cluster.scope}, demoting current leader {leader.name}?"
    session.confirm(args.force, question)
    body: dict[str, Any] = {"candidate": candidate}
    if args.leader is not None:
        body["leader"] = args.leader
    if args.accept_data_loss:
        body["accept_data_loss"] = True
    return _hand_over(session, "failover", body, leader.name if leader else None, candidate, args.wait_timeout)


def _hand_over(session: Session, action: str, body: dict[str, Any], old: str | None, candidate: str | None,
               timeout: float, *, scheduled: bool = False) -> int:
    """POST the request (a spinner while the API works), then watch /cluster until the lease moved."""
    with session.out.status(f"Requesting {action} ..."):
        response = session.send("POST", action, body, timeout=timeout)
    if scheduled or response.status == 202:
        session.print(f"{now_text()} {response.message or 'Switchover scheduled'}")
        show_cluster(session, session.cluster(system_id=True))
        return 0

    def moved() -> bool:
        leader = session.cluster().leader
        if leader is None:
            return False
        return leader.name == candidate if candidate is not None else leader.name != old

    wait_for(session, f"the {action} to complete", timeout, moved)
    cluster = session.cluster(system_id=True)
    new = cluster.leader.name if cluster.leader else "?"
    verb = "switched" if action == "switchover" else "failed"
    session.print(f'{now_text()} Successfully {verb} over to "{new}"', style="green")
    show_cluster(session, cluster)
    return 0


# -- member actions -------------------------------------------------------------------------------


def _each(session: Session, members: list[MemberView], method: str, path: str, body: Any,
          describe: Callable[[MemberView, Response], str], timeout: float | None = None) -> int:
    """Send one request per member; report each answer; exit 1 if any failed."""
    failed = False
    for member in members:
        try:
            response = session.send_to(member, method, path, body, timeout=timeout)
        except ApiError as exc:
            session.error(f"Failed: {path} for member {member.name}, status code={exc.status}, ({exc.message})")
            failed = True
        except CtlError as exc:
            session.error(f"Failed: {path} for member {member.name}: {exc}")
            failed = True
        else:
            session.print(describe(member, response), style="green")
    return 1 if failed else 0


def cmd_restart(session: Session, args: argparse.Namespace) -> int:
    cluster = session.cluster(system_id=True)
    members = _select(session, cluster, args.members, args.role)
    if args.pending:
        members = [m for m in members if m.pending_restart]
    if not members:
        raise CtlError("no member matches (check the names, --role and --pending)")
    when = _ask_when(session, args, "restart")
    show_cluster(session, cluster)
    names = ", ".join(m.name for m in members)
    session.confirm(args.force, f"Are you sure you want to restart members {names}?"
                    if when is None else f"Are you sure you want to schedule a restart of members {names} at {when}?")
    body: dict[str, Any] = {}
    if when is not None:
        body["schedule"] = when
    if args.pending:
        body["restart_pending"] = True
    role = ROLE_ALIASES.get(args.role, args.role)
    if role != "any":
        body["role"] = role
    if args.pg_version:
        body["postgres_version"] = args.pg_version

    def describe(member: MemberView, response: Response) -> str:
        if response.status == 202 or when is not None:
            return f"Success: restart scheduled on member {member.name}"
        return f"Success: restart on member {member.name}"

    return _each(session, members, "POST", "restart", body, describe, timeout=args.wait_timeout)


def cmd_reload(session: Session, args: argparse.Namespace) -> int:
    cluster = session.cluster(system_id=True)
    members = _select(session, cluster, args.members, args.role)
    if not members:
        raise CtlError("no member matches")
    show_cluster(session, cluster)
    session.confirm(args.force, f"Are you sure you want to reload members {', '.join(m.name for m in members)}?")

    def describe(member: MemberView, response: Response) -> str:
        detail = f": {response.message}" if response.message else ""
        return f"Reload request received for member {member.name}{detail}"

    return _each(session, members, "POST", "reload", {}, describe)


def _start_time(session: Session, member: MemberView) -> Any:
    try:
        return session.member_status(member).get("postmaster_start_time")
    except CtlError:
        return None


def cmd_reinit(session: Session, args: argparse.Namespace) -> int:
    cluster = session.cluster(system_id=True)
    members = session.find_members(cluster, args.members)
    leaders = [m.name for m in members if m.is_leader]
    if leaders:
        raise CtlError(f"{', '.join(leaders)} is the leader: only replicas can be reinitialized")
    show_cluster(session, cluster)
    session.confirm(args.force, f"Are you sure you want to reinitialize members {', '.join(m.name for m in members)}?")
    before = {m.name: _start_time(session, m) for m in members} if args.wait else {}
    result = _each(session, members, "POST", "reinitialize", {"force": args.force},
                   lambda m, _r: f"Success: reinitialize for member {m.name}")
    if result or not args.wait:
        return result
    session.print(f"Waiting for reinitialize to complete on: {', '.join(m.name for m in members)}")
    for member in members:
        seen_down = False

        def done(member: MemberView = member) -> bool:
            nonlocal seen_down
            status = session.member_status(member)
            if status.get("state") != "running":
                seen_down = True
                return False
            started = status.get("postmaster_start_time")
            return seen_down or (started is not None and started != before.get(member.name))

        wait_for(session, f"reinitialize of {member.name}", args.wait_timeout, done)
    session.print(f"Reinitialize is completed on: {', '.join(m.name for m in members)}", style="green")
    return 0


def cmd_flush(session: Session, args: argparse.Namespace) -> int:
    cluster = session.cluster(system_id=True)
    if args.target == "switchover":
        session.confirm(args.force, f"Are you sure you want to cancel the scheduled switchover of {cluster.scope}?")
        response = session.send("DELETE", "switchover")
        session.print(f"Success: {response.message or 'scheduled switchover deleted'}", style="green")
        return 0
    members = _select(session, cluster, args.members, args.role)
    if not args.members:
        members = [m for m in members if m.scheduled_restart] or members
    if not members:
        raise CtlError("no member matches")
    show_cluster(session, cluster)
    session.confirm(args.force, "Are you sure you want to cancel the scheduled restart of members "
                                f"{', '.join(m.name for m in members)}?")
    return _each(session, members, "DELETE", "restart", None,
                 lambda m, _r: f"Success: flush scheduled restart for member {m.name}")


# -- cluster-wide settings ------------------------------------------------------------------------


def cmd_pause(session: Session, args: argparse.Namespace) -> int:
    pause = args.verb == "pause"
    cluster = session.cluster()
    if cluster.paused == pause:
        raise CtlError(f"cluster {cluster.scope} is {'already paused' if pause else 'not paused'}")
    session.send("PATCH", "config", {"pause": pause})
    word = "paused" if pause else "resumed"
    if args.wait:
        session.print(f"'{args.verb}' request sent, waiting until it is recognized by all nodes")

        def everyone() -> bool:
            return all(session.member_status(m).get("pause", False) is pause for m in cluster.members)

        wait_for(session, f"every member to report pause={str(pause).lower()}", args.wait_timeout, everyone)
    session.print(f"Success: cluster management is {word}", style="green")
    return 0


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def read_config(session: Session) -> tuple[dict[str, Any], str | None]:
    """The dynamic configuration and its version (ETag, else /cluster's config_version read first)."""
    response = session.get("config")
    version = _header(response.headers, "ETag")
    if version is None:
        doc = session.get("cluster").body
        own = doc.get("raftpg") if isinstance(doc, dict) else None
        if isinstance(own, dict) and own.get("config_version") is not None:
            version = str(own["config_version"])
            response = session.get("config")  # not older than the version: a race gives 412, never a lost edit
    if not isinstance(response.body, dict):
        raise CtlError(f"GET /config did not answer a JSON object: {response.body!r}")
    return response.body, version


def _read_source(source: str) -> str:
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {source}: {exc}") from None


def _edit_in_editor(session: Session, text: str) -> str:
    """Run $VISUAL/$EDITOR on a temporary YAML file; it waits for the operator, so it has no timeout."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if editor is None:
        if not session.interactive:
            raise UsageError("nothing to change: give --set, --pg, --apply or --replace (or run on a terminal)")
        editor = "vi"
    with tempfile.TemporaryDirectory(prefix="raftpg-ctl-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        except OSError as exc:
            raise CtlError(f"cannot run the editor {editor!r}: {exc}") from None
        if done.returncode != 0:
            raise CtlError(f"the editor {editor!r} exited with status {done.returncode}; nothing changed")
        return path.read_text(encoding="utf-8")


def cmd_edit_config(session: Session, args: argparse.Namespace) -> int:
    if args.replace is not None and (args.apply is not None or args.set or args.pg):
        raise UsageError("--replace cannot be combined with --apply, --set or --pg")
    config, version = read_config(session)
    if args.replace is not None:
        new = load_mapping(_read_source(args.replace), args.replace)
    elif args.apply is None and not args.set and not args.pg:
        new = load_mapping(_edit_in_editor(session, dump_yaml(config)), "the edited configuration")
    else:
        new = config
        if args.apply is not None:
            new = apply_patch(new, load_mapping(_read_source(args.apply), args.apply))
        for text in args.set:
            path, value = parse_assignment(text)
            new = set_path(new, path, value)
        for text in args.pg:
            path, value = parse_assignment(text, ("postgresql", "parameters"))
            new = set_path(new, path, value)
    old_text, new_text = dump_yaml(config), dump_yaml(new)
    if old_text == new_text:
        session.print("Not changed")
        return 0
    if not args.quiet:
        for line, style in config_diff(old_text, new_text):
            session.out.print(Text(line, style=style or ""))
        session.print("")
    session.confirm(args.force, "Apply these changes?")
    headers = {"If-Match": version} if version is not None else {}
    try:
        if args.replace is not None:
            session.send("PUT", "config", new, headers=headers)
        else:
            session.send("PATCH", "config", make_patch(config, new), headers=headers)
    except ApiError as exc:
        if exc.status == 412:
            raise CtlError("the configuration changed while you were editing it (version mismatch); "
                           f"nothing was applied, run edit-config again ({exc.message})") from None
        raise
    session.print("Configuration changed", style="green")
    return 0


def cmd_members_change(session: Session, args: argparse.Namespace) -> int:
    try:
        addr = str(Address.parse(args.addr, "ADDR"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    adding = args.members_verb == "add"
    session.get("raft")  # find a node that answers before asking anything
    session.confirm(args.force, f"Are you sure you want to {'add' if adding else 'remove'} Raft voter {addr}?")
    timeout = max(session.client.timeout, 30.0)
    if adding:
        response = session.send("POST", "raft/members", {"addr": addr}, timeout=timeout)
    else:
        response = session.send("DELETE", f"raft/members/{urllib.parse.quote(addr, safe='')}", timeout=timeout)
    detail = f": {response.message}" if response.message else ""
    session.print(f"Success: Raft voter {addr} {'added' if adding else 'removed'}{detail}", style="green")
    return 0
