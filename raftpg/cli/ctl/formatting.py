"""Pure formatting for `raftpg ctl`: views in, text or plain records out (no I/O, no clock).

Tables mimic patronictl's (ASCII grid, "+ Cluster: name (system id)" in the top border) so
operators and their scripts see the shapes they know; `--format json|yaml` gives one record
per member with patronictl's keys.
"""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from psycopg.conninfo import make_conninfo
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from raftpg.cli.ctl.model import ClusterView, ConnectionProblem, HistoryEntry, MemberView
from raftpg.config import Tags

MEMBER_COLUMNS = ("Member", "Host", "Role", "State", "TL", "Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag")
EXTENDED_COLUMNS = ("Pending restart", "Scheduled restart", "Tags")
HISTORY_COLUMNS = ("TL", "LSN", "Reason", "Timestamp", "New Leader")
_RIGHT = frozenset({"TL", "Receive Lag", "Replay Lag", "LSN"})
_ROLE_LABELS = {
    "leader": "Leader",
    "master": "Primary",
    "standby_leader": "Standby Leader",
    "sync_standby": "Sync Standby",
    "quorum_standby": "Quorum Standby",
    "replica": "Replica",
}
_DEFAULT_TAGS = Tags().to_dict()
MB = 1024 * 1024


def role_label(role: str) -> str:
    return _ROLE_LABELS.get(role, role.replace("_", " ").title())


def lag_mb(lag: int | str | None) -> int | str | None:
    """Bytes as whole megabytes, as patronictl's lag columns show them; text ("unknown") kept."""
    if isinstance(lag, int):
        return round(lag / MB)
    return lag


def custom_tags(tags: Mapping[str, Any]) -> dict[str, Any]:
    """Tags that differ from the defaults: the ones worth a column."""
    return {k: v for k, v in sorted(tags.items()) if k not in _DEFAULT_TAGS or _DEFAULT_TAGS[k] != v}


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in value.items())
    return str(value)


def member_record(cluster: ClusterView, member: MemberView, *, extended: bool = False) -> dict[str, Any]:
    """One member in patronictl's keys; empty values are left out unless `extended`."""
    record: dict[str, Any] = {
        "Cluster": cluster.scope,
        "Member": member.name,
        "Host": member.host_port,
        "Role": role_label(member.role),
        "State": member.state,
        "TL": member.timeline,
        "Receive LSN": member.receive_lsn,
        "Receive Lag": lag_mb(member.receive_lag),
        "Replay LSN": member.replay_lsn,
        "Replay Lag": lag_mb(member.replay_lag),
        "Pending restart": "*" if member.pending_restart else None,
        "Scheduled restart": member.scheduled_restart,
        "Tags": custom_tags(member.tags) or None,
    }
    if extended:
        return record
    return {k: v for k, v in record.items() if v is not None and v != ""}


def list_records(cluster: ClusterView) -> list[dict[str, Any]]:
    return [member_record(cluster, m) for m in cluster.members]


def extra_columns(cluster: ClusterView, extended: bool) -> tuple[str, ...]:
    """Extended columns: all with -e, otherwise only those some member has a value for."""
    if extended:
        return EXTENDED_COLUMNS
    records = [member_record(cluster, m) for m in cluster.members]
    return tuple(c for c in EXTENDED_COLUMNS if any(c in r for r in records))


def render_grid(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """An ASCII grid as text; `title` is written into the top border, patronictl style."""
    table = Table(box=box.ASCII2, header_style=None, show_edge=True)
    for header in headers:
        table.add_column(header, justify="right" if header in _RIGHT else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell_text(value)) for value in row))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, force_terminal=False, legacy_windows=False).print(table)
    lines = buffer.getvalue().rstrip("\n").split("\n")
    if title is not None:
        prefix = f"+ {title} "
        top = lines[0]
        lines[0] = prefix + top[len(prefix):] if len(prefix) < len(top) - 1 else prefix.rstrip() + "-+"
    return "\n".join(lines)


def cluster_title(cluster: ClusterView) -> str:
    return f"Cluster: {cluster.scope}" + (f" ({cluster.system_id})" if cluster.system_id else "")


def cluster_table(cluster: ClusterView, *, extended: bool = False, topology: bool = False) -> str:
    extra = extra_columns(cluster, extended)
    headers = MEMBER_COLUMNS + extra
    rows = []
    members = topology_order(cluster) if topology else [(0, m) for m in cluster.members]
    for depth, member in members:
        record = member_record(cluster, member, extended=True)
        if depth:
            record["Member"] = "  " * (depth - 1) + "+ " + member.name
        rows.append([record.get(h) for h in headers])
    return render_grid(headers, rows, cluster_title(cluster))


def cluster_footer(cluster: ClusterView) -> list[str]:
    lines = []
    scheduled = cluster.scheduled_switchover
    if scheduled:
        lines.append(f" Switchover scheduled at: {scheduled.get('at', '?')}")
        if scheduled.get("from"):
            lines.append(f"                    from: {scheduled['from']}")
        if scheduled.get("to"):
            lines.append(f"                      to: {scheduled['to']}")
    if cluster.paused:
        lines.append(" Maintenance mode: on")
    return lines


def problem_lines(problems: Sequence[ConnectionProblem]) -> list[str]:
    """Footnotes under `ctl list`: members that fail for TLS or authentication reasons."""
    if not problems:
        return []
    return [" Connection problems:",
            *(f"  {p.member}: {p.text} (seen by {', '.join(p.seen_by)})" for p in problems)]


def reinit_lines(cluster: ClusterView) -> list[str]:
    """Footnotes under `ctl list`: members that wait for an operator's `ctl reinit`."""
    waiting = [m for m in cluster.members if m.needs_reinit]
    if not waiting:
        return []
    return [" Needs reinit:", *(f"  {m.name}: {m.needs_reinit}" for m in waiting)]


def topology_order(cluster: ClusterView) -> list[tuple[int, MemberView]]:
    """Depth-first by upstream: tags.replicatefrom when it names a member, else the leader."""
    names = set(cluster.names)
    leader = cluster.leader

    def upstream(member: MemberView) -> str | None:
        if member.is_leader:
            return None
        wanted = member.tags.get("replicatefrom")
        if isinstance(wanted, str) and wanted in names and wanted != member.name:
            return wanted
        return leader.name if leader is not None else None

    children: dict[str | None, list[MemberView]] = {}
    for member in cluster.members:
        children.setdefault(upstream(member), []).append(member)
    ordered: list[tuple[int, MemberView]] = []
    seen: set[str] = set()

    def visit(member: MemberView, depth: int) -> None:
        if member.name in seen:
            return
        seen.add(member.name)
        ordered.append((depth, member))
        for child in children.get(member.name, []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    for member in cluster.members:  # members in an upstream cycle still get shown
        visit(member, 0)
    return ordered


def history_records(entries: Sequence[HistoryEntry]) -> list[dict[str, Any]]:
    return [
        {"TL": e.timeline, "LSN": e.lsn, "Reason": e.reason, "Timestamp": e.timestamp, "New Leader": e.new_leader}
        for e in entries
    ]


def history_table(entries: Sequence[HistoryEntry]) -> str:
    rows = [[r[h] for h in HISTORY_COLUMNS] for r in history_records(entries)]
    return render_grid(HISTORY_COLUMNS, rows)


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, allow_unicode=True)


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)


def config_diff(old: str, new: str) -> list[tuple[str, str | None]]:
    """Unified diff lines of two YAML texts, each with a rich style (None for context)."""
    lines = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm=""):
        if line.startswith(("+++", "---")):
            line, style = line.rstrip(), "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = None
        lines.append((line, style))
    return lines


def pg_version(server_version: Any) -> str | None:
    """PostgreSQL's server_version_num (150004) as text (15.4); 9.x has three parts."""
    if not isinstance(server_version, int) or isinstance(server_version, bool) or server_version <= 0:
        return None
    major, rest = divmod(server_version, 10000)
    if major >= 10:
        return f"{major}.{rest}"
    return f"{major}.{rest // 100}.{rest % 100}"


def version_line(name: str, status: Mapping[str, Any]) -> str:
    """"name: raftpg 0.1.0 PostgreSQL 15.4" from a member's /patroni document."""
    patroni = status.get("patroni")
    version = patroni.get("version") if isinstance(patroni, Mapping) else None
    text = f"{name}: raftpg {version or '?'}"
    pg = pg_version(status.get("server_version"))
    return text + (f" PostgreSQL {pg}" if pg else "")


def dsn(member: MemberView, user: str | None = None) -> str:
    """A libpq conninfo for the member: host, port and (when known) user; never a password."""
    return make_conninfo(host=member.host, port=member.port, user=user or None)
