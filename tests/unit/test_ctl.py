"""`raftpg ctl` against a fake REST API peer: a real aiohttp server on 127.0.0.1 serving
Patroni-shaped JSON and recording every request it gets.

The CLI does blocking HTTP, so each test runs it in a worker thread (asyncio.to_thread) while
the test's event loop serves the fake API.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from raftpg.cli.ctl import commands as ctl
from raftpg.cli.ctl import session as ctl_session
from raftpg.cli.ctl.actions import parse_when
from raftpg.cli.ctl.client import UsageError
from raftpg.cli.ctl.config_edit import parse_assignment, set_path
from raftpg.cli.ctl.formatting import lag_mb, pg_version, render_grid, topology_order
from raftpg.cli.ctl.model import ClusterView, HistoryEntry
from raftpg.config import sample_config
from raftpg.mergepatch import apply_patch, make_patch

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

MB = 1024 * 1024
SYSID = "7300000000000000001"


@dataclass
class Seen:
    method: str
    endpoint: str  # path without the member prefix, e.g. "restart"
    member: str | None  # which member's API was addressed (None: the entry URL)
    headers: dict[str, str]
    body: Any
    raw_path: str


@dataclass
class FakeApi:
    """The state the fake serves; tests tweak it and read `seen` afterwards."""

    base: str = ""
    leader: str = "n1"
    paused: bool = False
    config_version: int = 7
    config: dict[str, Any] = field(default_factory=lambda: {
        "ttl": 10, "loop_wait": 2, "postgresql": {"parameters": {"max_connections": 100}}})
    pending: set[str] = field(default_factory=lambda: {"n2"})
    states: dict[str, list[str]] = field(default_factory=dict)  # member -> states /patroni answers in turn
    peer_problems: dict[str, dict[str, Any]] = field(default_factory=dict)  # member -> its raftpg.peer_problems
    needs_reinit: dict[str, str] = field(default_factory=dict)  # member -> its needs_reinit in /cluster
    daemon_started: dict[str, float] = field(default_factory=dict)  # member -> its raftpg.started_at
    operation: dict[str, Any] = field(default_factory=lambda: {"revision": 0, "record": None})  # rolling_restart
    witnesses: dict[str, bool] = field(default_factory=dict)  # witness member -> its Raft has_quorum
    overrides: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def requests(self, method: str, endpoint: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.endpoint == endpoint]

    def member(self, name: str, port: int) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": name,
            "role": "leader" if name == self.leader else ("sync_standby" if name == "n2" else "replica"),
            "state": "running" if name == self.leader else "streaming",
            "api_url": f"{self.base}/m/{name}/patroni",
            "host": "127.0.0.1",
            "port": port,
            "timeline": 3,
            "tags": {"nofailover": False, "failover_priority": 1} | ({"nosync": True} if name == "n3" else {}),
        }
        if name in self.pending:
            record["pending_restart"] = True
        if name in self.needs_reinit:
            record["needs_reinit"] = self.needs_reinit[name]
        if name != self.leader:
            record |= {"receive_lsn": "0/5000000", "receive_lag": MB, "replay_lsn": "0/4F00000",
                       "replay_lag": 2 * MB + 1, "lsn": "0/4F00000", "lag": 2 * MB + 1}
        return record

    def cluster(self) -> dict[str, Any]:
        members = [self.member(n, 5432 + i) for i, n in enumerate(("n1", "n2", "n3"))]
        members += [{"name": name, "role": "witness", "state": "running", "api_url": f"{self.base}/m/{name}/patroni",
                     "host": "127.0.0.1", "port": None, "tags": {"nofailover": True}} for name in self.witnesses]
        return {"members": members, "scope": "demo", "pause": self.paused,
                "raftpg": {"config_version": self.config_version}}

    def status(self, name: str) -> dict[str, Any]:
        if name in self.witnesses:
            return self.witness_status(name)
        queue = self.states.get(name)
        state = queue.pop(0) if queue and len(queue) > 1 else (queue[0] if queue else "running")
        index = ("n1", "n2", "n3").index(name)
        return {
            "state": state,
            "role": "primary" if name == self.leader else "replica",
            "server_version": 150004,
            "timeline": 3,
            "database_system_identifier": SYSID,
            "postmaster_start_time": f"2030-01-01 00:00:0{index}+00:00",
            "pause": self.paused,
            "patroni": {"version": "0.1.0", "scope": "demo", "name": name},
            "raftpg": {"raft": {"self_addr": f"127.0.0.1:{7001 + index}"},
                       "peer_problems": self.peer_problems.get(name, {})}
            | ({"started_at": self.daemon_started[name]} if name in self.daemon_started else {}),
            **({} if name == self.leader else {"replication_state": "streaming"}),
        }

    def witness_status(self, name: str) -> dict[str, Any]:
        raft = {"self_addr": "127.0.0.1:7009", "has_quorum": self.witnesses[name],
                "partners": {"127.0.0.1:7001": True, "127.0.0.1:7002": True, "127.0.0.1:7003": True}}
        return {"state": "running", "role": "witness", "pause": self.paused,
                "patroni": {"version": "0.1.0", "scope": "demo", "name": name},
                "raftpg": {"raft": raft, "peer_problems": {}}
                | ({"started_at": self.daemon_started[name]} if name in self.daemon_started else {})}

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path.strip("/")
        member = None
        if path.startswith("m/"):
            _, member, path = path.split("/", 2)
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.seen.append(Seen(request.method, path, member, dict(request.headers), body, request.raw_path))
        override = self.overrides.get((request.method, path))
        if override is not None:
            return web.json_response(override[1], status=override[0])
        return self.answer(request.method, path, member or self.leader, body)

    def answer(self, method: str, path: str, member: str, body: Any) -> web.Response:
        ok = web.json_response
        if (method, path) == ("GET", "cluster"):
            return ok(self.cluster())
        if (method, path) == ("GET", "patroni"):
            return ok(self.status(member))
        if (method, path) == ("GET", "history"):
            return ok([[1, 25165984, "no recovery target specified", "2030-01-01T10:00:00+00:00", "n1"],
                       [2, 50331800, "switchover to n2", "2030-01-02T10:00:00+00:00", "n2"]])
        if (method, path) == ("GET", "operations/rolling_restart"):
            return ok({"name": "rolling_restart", **self.operation})
        if (method, path) == ("PUT", "operations/rolling_restart"):
            if body["expected_revision"] != self.operation["revision"]:
                return ok({"error": "moved", **self.operation}, status=409)
            self.operation = {"revision": body["expected_revision"] + 1, "record": body["record"]}
            return ok({"name": "rolling_restart", **self.operation})
        if (method, path) == ("GET", "config"):
            return ok(self.config, headers={"ETag": f'"{self.config_version}"'})
        if (method, path) == ("PATCH", "config"):
            self.config = apply_patch(self.config, body)
            self.paused = bool(self.config.get("pause", False))
            self.config_version += 1
            return ok({"config": self.config, "config_version": self.config_version})
        if (method, path) in (("POST", "switchover"), ("POST", "failover")):
            if body.get("scheduled_at"):
                return ok({"message": "Switchover scheduled"}, status=202)
            self.leader = body.get("candidate") or "n2"
            return ok({"message": f'Successfully switched over to "{self.leader}"'})
        if (method, path) == ("POST", "restart"):
            return ok({"message": "restarted successfully"}, status=202 if body.get("schedule") else 200)
        if (method, path) == ("POST", "reload"):
            return ok({"message": "reload scheduled"}, status=202)
        if (method, path) == ("POST", "reinitialize"):
            return ok({"message": "reinitialize started"})
        if (method, path) == ("GET", "raft"):
            return ok({"self_addr": "127.0.0.1:7001", "leader": "127.0.0.1:7001", "term": 3, "commit_index": 42,
                       "has_quorum": True, "partners": {"127.0.0.1:7002": True, "127.0.0.1:7003": False}})
        if method in ("POST", "DELETE") and path.startswith("raft/members"):
            return ok({"message": "done"})
        if method == "DELETE" and path in ("switchover", "restart"):
            return ok({"message": f"scheduled {path} deleted"})
        return ok({"error": f"no route {method} /{path}"}, status=404)


@pytest.fixture
async def fake() -> AsyncIterator[FakeApi]:
    api = FakeApi()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    api.base = str(server.make_url("")).rstrip("/")
    try:
        yield api
    finally:
        await server.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftpg")
    sub = parser.add_subparsers(dest="command", required=True)
    ctl.register(sub)
    return parser


def invoke(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


async def run_ctl(fake: FakeApi, *argv: str) -> int:
    return await asyncio.to_thread(invoke, ["ctl", "--api", fake.base, "--timeout", "3", *argv])


# -- list and friends -----------------------------------------------------------------------------


async def test_list_pretty_shows_members_roles_lags_and_title(fake: FakeApi,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "list") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"+ Cluster: demo ({SYSID}) ")
    header = lines[1]
    for column in ("Member", "Host", "Role", "State", "TL", "Receive LSN", "Receive Lag", "Replay LSN",
                   "Replay Lag", "Pending restart", "Tags"):
        assert column in header
    row_n1 = next(line for line in lines if "| n1 " in line)
    row_n2 = next(line for line in lines if "| n2 " in line)
    row_n3 = next(line for line in lines if "| n3 " in line)
    assert "Leader" in row_n1 and "127.0.0.1:5432" in row_n1
    assert "Sync Standby" in row_n2 and "0/5000000" in row_n2 and "*" in row_n2
    assert [c.strip() for c in row_n2.split("|")][7] == "1"  # Receive Lag in MB
    assert [c.strip() for c in row_n2.split("|")][9] == "2"  # Replay Lag in MB (rounded)
    assert "Replica" in row_n3 and "nosync: true" in row_n3
    assert "Maintenance mode" not in out


async def test_list_paused_prints_maintenance_mode(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.paused = True
    assert await run_ctl(fake, "list") == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].strip() == "Maintenance mode: on"


async def test_list_footnotes_members_others_cannot_talk_to(fake: FakeApi,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad_cert = {"kind": "TLS", "reason": "certificate verify failed: unable to get local issuer certificate",
                "since": "2030-01-01T00:00:00+00:00"}
    fake.peer_problems = {"n1": {"n3": bad_cert}, "n2": {"n3": bad_cert},
                          "n3": {"n1": {"kind": "authentication", "reason": "HTTP 401", "since": "x"}}}
    assert await run_ctl(fake, "list") == 0
    tail = capsys.readouterr().out.rstrip().splitlines()[-3:]
    assert [line.strip() for line in tail] == [
        "Connection problems:",
        "n1: authentication: HTTP 401 (seen by n3)",
        "n3: TLS: certificate verify failed: unable to get local issuer certificate (seen by n1, n2)",
    ]


async def test_list_footnotes_members_waiting_for_reinit_with_the_fix(fake: FakeApi,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake.needs_reinit = {"n3": "pg_rewind cannot succeed; to re-clone it: raftpg ctl reinit demo n3"}
    assert await run_ctl(fake, "list") == 0
    tail = capsys.readouterr().out.rstrip().splitlines()[-2:]
    assert [line.strip() for line in tail] == [
        "Needs reinit:", "n3: pg_rewind cannot succeed; to re-clone it: raftpg ctl reinit demo n3"]


async def test_rolling_restart_daemon_plan_replaces_each_raftpg_the_primarys_before_the_switchover(
        fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.pending = set()
    fake.daemon_started = {"n1": 1.0, "n2": 2.0, "n3": 3.0}
    assert await run_ctl(fake, "rolling-restart", "--daemon", "--dry-run") == 0
    rows = [[c.strip() for c in line.split("|")[1:4]] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| n")]
    assert rows == [
        ["n2", "restart PostgreSQL", "to do"], ["n2", "restart raftpg", "to do"],
        ["n3", "restart PostgreSQL", "to do"], ["n3", "restart raftpg", "to do"],
        ["n1", "restart raftpg, keeping the lease", "to do"],
        ["n1", "switchover to the best restarted replica", "to do"],
        ["n1", "resume; PostgreSQL starts again as a replica", "to do"],
    ]
    assert fake.requests("POST", "restart") == [] and fake.requests("PATCH", "config") == []
    assert fake.requests("PUT", "operations/rolling_restart") == []


async def test_rolling_restart_daemon_plan_replaces_the_witness_first_and_without_daemon_leaves_it_out(
        fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.pending = set()
    fake.witnesses = {"w1": True}
    fake.daemon_started = {"n1": 1.0, "n2": 2.0, "n3": 3.0, "w1": 4.0}

    def rows() -> list[list[str]]:
        return [[c.strip() for c in line.split("|")[1:4]] for line in capsys.readouterr().out.splitlines()
                if line.startswith(("| n", "| w"))]

    assert await run_ctl(fake, "rolling-restart", "--daemon", "--dry-run") == 0
    daemon_rows = rows()
    assert daemon_rows[0] == ["w1", "restart raftpg (witness)", "to do"]
    assert daemon_rows[1:3] == [["n2", "restart PostgreSQL", "to do"], ["n2", "restart raftpg", "to do"]]
    assert [r[0] for r in daemon_rows].count("w1") == 1 and len(daemon_rows) == 8
    assert await run_ctl(fake, "rolling-restart", "--dry-run") == 0
    assert "w1" not in {r[0] for r in rows()}
    assert fake.requests("POST", "restart") == [] and fake.requests("PUT", "operations/rolling_restart") == []


async def test_rolling_restart_daemon_refused_while_the_witness_does_not_vote(
        fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.pending = set()
    fake.witnesses = {"w1": False}
    fake.daemon_started = {"n1": 1.0, "n2": 2.0, "n3": 3.0, "w1": 4.0}
    assert await run_ctl(fake, "rolling-restart", "--daemon", "--force") == 1
    err = capsys.readouterr().err
    assert "witness w1 is not running in Raft" in err and "every Raft voter must be up" in err
    assert fake.requests("POST", "restart") == [] and fake.requests("PATCH", "config") == []
    assert fake.operation == {"revision": 0, "record": None}


async def test_rolling_restart_daemon_refused_when_a_member_cannot_restart_its_raftpg(
        fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.pending = set()
    fake.daemon_started = {"n1": 1.0, "n2": 2.0}
    assert await run_ctl(fake, "rolling-restart", "--daemon", "--force") == 1
    assert "n3 publish no raftpg.started_at" in capsys.readouterr().err
    assert fake.requests("POST", "restart") == [] and fake.requests("PATCH", "config") == []
    assert fake.operation == {"revision": 0, "record": None}


def live_run(started: float) -> dict[str, Any]:
    now = time.time()
    return {"version": 1, "old_primary": "n1", "started": {"n1": started, "n2": started, "n3": started},
            "daemons": {}, "owner": {"host": "opshost", "pid": 4242}, "began_at": now - 60, "heartbeat_at": now,
            "step": "n2: restart PostgreSQL", "done": ["cluster: pause"], "halted": ""}


async def test_rolling_restart_refuses_to_drive_a_run_another_ctl_drives(
        fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.paused = True
    fake.operation = {"revision": 3, "record": live_run(1.0)}
    assert await run_ctl(fake, "rolling-restart", "--force") == 1
    err = capsys.readouterr().err
    assert "another ctl is driving this run" in err and "opshost (pid 4242)" in err and "--take-over" in err
    assert fake.requests("PUT", "operations/rolling_restart") == [] and fake.requests("POST", "restart") == []


async def test_rolling_restart_status_and_list_show_the_run_in_progress(
        fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.operation = {"revision": 3, "record": live_run(1.0)}
    assert await run_ctl(fake, "rolling-restart", "--status") == 0
    out = capsys.readouterr().out
    assert "opshost (pid 4242)" in out and "n2: restart PostgreSQL" in out and "done: cluster: pause" in out
    assert await run_ctl(fake, "list") == 0
    assert "In progress: rolling restart started" in capsys.readouterr().out
    assert await run_ctl(fake, "rolling-restart", "--abandon", "--force") == 0
    assert fake.operation == {"revision": 4, "record": None}


async def test_list_json_has_patronictl_keys(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "list", "--format", "json") == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["Member"] for r in records] == ["n1", "n2", "n3"]
    leader, sync, replica = records
    assert leader == {"Cluster": "demo", "Member": "n1", "Host": "127.0.0.1:5432", "Role": "Leader",
                      "State": "running", "TL": 3}
    assert sync["Role"] == "Sync Standby" and sync["Receive Lag"] == 1 and sync["Replay Lag"] == 2
    assert sync["Receive LSN"] == "0/5000000" and sync["Pending restart"] == "*"
    assert replica["Tags"] == {"nosync": True}


async def test_list_yaml_matches_json(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "list", "-f", "json") == 0
    as_json = json.loads(capsys.readouterr().out)
    assert await run_ctl(fake, "list", "-f", "yaml") == 0
    assert yaml.safe_load(capsys.readouterr().out) == as_json


async def test_list_watch_is_bounded_by_watch_count(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "list", "-w", "0.05", "--watch-count", "3") == 0
    assert capsys.readouterr().out.count("+ Cluster: demo") == 3
    assert len(fake.requests("GET", "cluster")) == 3


async def test_topology_indents_replicas_under_their_upstream(fake: FakeApi,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "topology") == 0
    members = [line.split("|")[1].rstrip() for line in capsys.readouterr().out.splitlines()[3:6]]
    assert members == [" n1", " + n2", " + n3"]


async def test_show_config_prints_yaml(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "show-config") == 0
    assert yaml.safe_load(capsys.readouterr().out) == fake.config


async def test_history_table_and_json(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [c.strip() for c in lines[1].split("|")[1:-1]] == ["TL", "LSN", "Reason", "Timestamp", "New Leader"]
    assert [c.strip() for c in lines[4].split("|")[1:-1]] == [
        "2", "50331800", "switchover to n2", "2030-01-02T10:00:00+00:00", "n2"]
    assert await run_ctl(fake, "history", "-f", "json") == 0
    assert json.loads(capsys.readouterr().out)[0] == {
        "TL": 1, "LSN": 25165984, "Reason": "no recovery target specified",
        "Timestamp": "2030-01-01T10:00:00+00:00", "New Leader": "n1"}


async def test_dsn_by_role_and_by_member(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "dsn") == 0
    assert capsys.readouterr().out.strip() == "host=127.0.0.1 port=5432"
    assert await run_ctl(fake, "dsn", "--role", "replica") == 0
    assert capsys.readouterr().out.strip() == "host=127.0.0.1 port=5433"
    assert await run_ctl(fake, "dsn", "n3", "-U", "app user") == 0
    assert capsys.readouterr().out.strip() == "host=127.0.0.1 port=5434 user='app user'"
    assert await run_ctl(fake, "dsn", "nobody") == 1
    assert "nobody is not a member" in capsys.readouterr().err


async def test_version_asks_every_member(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "version") == 0
    out = capsys.readouterr().out
    assert "raftpg ctl version" in out
    for name in ("n1", "n2", "n3"):
        assert f"{name}: raftpg 0.1.0 PostgreSQL 15.4" in out
    assert sorted(s.member for s in fake.requests("GET", "patroni") if s.member) == ["n1", "n2", "n3"]


async def test_members_lists_raft_voters_with_names(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "members", "-f", "json") == 0
    records = json.loads(capsys.readouterr().out)
    assert records == [
        {"Raft address": "127.0.0.1:7001", "Member": "n1", "Raft role": "Leader", "Connected": "self"},
        {"Raft address": "127.0.0.1:7002", "Member": "n2", "Raft role": "Follower", "Connected": "yes"},
        {"Raft address": "127.0.0.1:7003", "Member": "n3", "Raft role": "Follower", "Connected": "no"},
    ]


async def test_members_add_and_remove(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "members", "add", "127.0.0.1:7004", "--force") == 0
    assert fake.requests("POST", "raft/members")[0].body == {"addr": "127.0.0.1:7004"}
    assert await run_ctl(fake, "members", "remove", "127.0.0.1:7004", "--force") == 0
    assert [s.raw_path for s in fake.seen if s.method == "DELETE"] == ["/raft/members/127.0.0.1%3A7004"]
    assert await run_ctl(fake, "members", "remove", "no-port") == 2
    assert "has no port" in capsys.readouterr().err
    assert await run_ctl(fake, "members", "add", "127.0.0.1:7005") == 1  # no tty, no --force
    assert len(fake.requests("POST", "raft/members")) == 1


# -- switchover / failover ------------------------------------------------------------------------


async def test_switchover_with_force_sends_leader_and_candidate(fake: FakeApi,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "switchover", "--candidate", "n3", "--force") == 0
    (request,) = fake.requests("POST", "switchover")
    assert request.body == {"leader": "n1", "candidate": "n3"}
    out = capsys.readouterr().out
    assert 'Successfully switched over to "n3"' in out
    assert "Current cluster topology" in out
    assert out.count("+ Cluster: demo") == 2  # before and after


async def test_switchover_without_tty_or_force_refuses(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "switchover", "--candidate", "n2") == 1
    err = capsys.readouterr().err
    assert "stdin is not a terminal" in err and "--force" in err
    assert fake.requests("POST", "switchover") == []


async def test_interactive_prompts_pick_candidate_and_confirm(fake: FakeApi, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ctl_session, "stdin_is_tty", lambda: True)
    monkeypatch.setattr(sys, "stdin", io.StringIO("n3\nnow\nn\n"))
    assert await run_ctl(fake, "switchover") == 1  # answered "n" to the confirmation
    assert "aborted" in capsys.readouterr().err
    assert fake.requests("POST", "switchover") == []
    monkeypatch.setattr(sys, "stdin", io.StringIO("n3\nnow\ny\n"))
    assert await run_ctl(fake, "switchover") == 0
    assert fake.requests("POST", "switchover")[0].body == {"leader": "n1", "candidate": "n3"}
    out = capsys.readouterr().out
    assert "Are you sure you want to switchover cluster demo, demoting current leader n1?" in out
    assert 'Successfully switched over to "n3"' in out


async def test_switchover_scheduled(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    code = await run_ctl(fake, "switchover", "--leader", "n1", "--scheduled", "2030-01-01T12:00+00:00", "--force")
    assert code == 0
    assert fake.requests("POST", "switchover")[0].body == {"leader": "n1", "scheduled_at": "2030-01-01T12:00:00+00:00"}
    assert "Switchover scheduled" in capsys.readouterr().out
    assert fake.leader == "n1"


async def test_switchover_from_wrong_leader_refused_locally(fake: FakeApi,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "switchover", "--leader", "n2", "--candidate", "n3", "--force") == 1
    assert "n2 is not the leader" in capsys.readouterr().err
    assert fake.requests("POST", "switchover") == []


async def test_api_error_is_printed_with_its_message(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.overrides[("POST", "switchover")] = (412, {"error": "candidate n2 is not a running replica"})
    assert await run_ctl(fake, "switchover", "--candidate", "n2", "--force") == 1
    err = capsys.readouterr().err
    assert "HTTP 412" in err and "candidate n2 is not a running replica" in err


async def test_failover_needs_candidate_without_tty(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "failover", "--force") == 2
    assert "--candidate is required" in capsys.readouterr().err
    assert await run_ctl(fake, "failover", "--candidate", "n3", "--accept-data-loss", "--force") == 0
    assert fake.requests("POST", "failover")[0].body == {"candidate": "n3", "accept_data_loss": True}
    assert 'Successfully failed over to "n3"' in capsys.readouterr().out


# -- edit-config, pause ---------------------------------------------------------------------------


async def test_edit_config_set_and_pg_send_merge_patch_with_if_match(fake: FakeApi,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = await run_ctl(fake, "edit-config", "--set", "loop_wait=5", "--set", "ttl=null",
                         "--pg", "max_connections=150", "-p", "work_mem='8MB'", "--force")
    assert code == 0
    (request,) = fake.requests("PATCH", "config")
    assert request.body == {"ttl": None, "loop_wait": 5,
                            "postgresql": {"parameters": {"max_connections": 150, "work_mem": "8MB"}}}
    assert request.headers["If-Match"] == '"7"'
    out = capsys.readouterr().out
    assert "-loop_wait: 2" in out and "+loop_wait: 5" in out and "-ttl: 10" in out
    assert "Configuration changed" in out


async def test_edit_config_version_conflict_is_reported(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.overrides[("PATCH", "config")] = (412, {"error": "the configuration is at version 8, not 7"})
    assert await run_ctl(fake, "edit-config", "-s", "loop_wait=3", "--force") == 1
    assert "changed while you were editing" in capsys.readouterr().err


async def test_edit_config_without_change_sends_nothing(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "edit-config", "--set", "loop_wait=2", "--force") == 0
    assert "Not changed" in capsys.readouterr().out
    assert fake.requests("PATCH", "config") == []


async def test_edit_config_without_tty_or_force_refuses(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "edit-config", "--set", "loop_wait=4") == 1
    assert "--force" in capsys.readouterr().err
    assert fake.requests("PATCH", "config") == []


async def test_edit_config_apply_file_and_editor(fake: FakeApi, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    patch_file = tmp_path / "patch.yaml"
    patch_file.write_text("postgresql:\n  parameters:\n    max_connections: null\nsynchronous_mode: quorum\n")
    assert await run_ctl(fake, "edit-config", "--apply", str(patch_file), "--force", "-q") == 0
    assert fake.requests("PATCH", "config")[0].body == {
        "postgresql": {"parameters": {"max_connections": None}}, "synchronous_mode": "quorum"}
    editor = tmp_path / "editor.py"
    editor.write_text("import sys\np = sys.argv[1]\nt = open(p).read()\n"
                      "open(p, 'w').write(t.replace('ttl: 10', 'ttl: 12'))\n")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    monkeypatch.delenv("VISUAL", raising=False)
    assert await run_ctl(fake, "edit-config", "--force") == 0
    assert fake.requests("PATCH", "config")[1].body == {"ttl": 12}
    assert fake.requests("PATCH", "config")[1].headers["If-Match"] == '"8"'


async def test_pause_and_resume_with_wait(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "pause", "--wait", "--wait-timeout", "5") == 0
    assert fake.requests("PATCH", "config")[0].body == {"pause": True}
    out = capsys.readouterr().out
    assert "waiting until it is recognized by all nodes" in out
    assert "Success: cluster management is paused" in out
    assert {s.member for s in fake.requests("GET", "patroni")} >= {"n1", "n2", "n3"}
    assert await run_ctl(fake, "pause") == 1
    assert "already paused" in capsys.readouterr().err
    assert await run_ctl(fake, "resume") == 0
    assert fake.requests("PATCH", "config")[1].body == {"pause": False}
    assert "Success: cluster management is resumed" in capsys.readouterr().out


# -- member actions -------------------------------------------------------------------------------


async def test_restart_pending_goes_to_pending_members_only(fake: FakeApi,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "restart", "--pending", "--force") == 0
    (request,) = fake.requests("POST", "restart")
    assert request.member == "n2"
    assert request.body == {"restart_pending": True}
    assert "Success: restart on member n2" in capsys.readouterr().out


async def test_restart_by_role_and_schedule(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    code = await run_ctl(fake, "restart", "--role", "replica", "--scheduled", "2030-01-01T12:00+00:00",
                         "--pg-version", "16.1", "--force")
    assert code == 0
    requests = fake.requests("POST", "restart")
    assert [r.member for r in requests] == ["n2", "n3"]
    assert requests[0].body == {"schedule": "2030-01-01T12:00:00+00:00", "role": "replica",
                                "postgres_version": "16.1"}
    assert capsys.readouterr().out.count("Success: restart scheduled on member") == 2


async def test_restart_reports_each_failure(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.overrides[("POST", "restart")] = (503, {"error": "restart already in progress"})
    assert await run_ctl(fake, "restart", "n1", "n3", "--force") == 1
    err = capsys.readouterr().err
    assert "member n1, status code=503, (restart already in progress)" in err
    assert "member n3" in err
    assert await run_ctl(fake, "restart", "ghost", "--force") == 1
    assert "ghost not a member" in capsys.readouterr().err


async def test_reload_and_flush(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_ctl(fake, "reload", "n2", "--force") == 0
    assert [r.member for r in fake.requests("POST", "reload")] == ["n2"]
    assert "Reload request received for member n2: reload scheduled" in capsys.readouterr().out
    assert await run_ctl(fake, "flush", "switchover", "--force") == 0
    assert len(fake.requests("DELETE", "switchover")) == 1
    assert await run_ctl(fake, "flush", "restart", "n3", "--force") == 0
    assert [r.member for r in fake.requests("DELETE", "restart")] == ["n3"]


async def test_reinit_waits_until_running_again(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.states["n3"] = ["running", "creating replica", "creating replica", "running"]
    assert await run_ctl(fake, "reinit", "n3", "--wait", "--wait-timeout", "10", "--force") == 0
    assert [r.member for r in fake.requests("POST", "reinitialize")] == ["n3"]
    assert "Reinitialize is completed on: n3" in capsys.readouterr().out
    assert await run_ctl(fake, "reinit", "n1", "--force") == 1
    assert "only replicas" in capsys.readouterr().err


# -- connection, auth, errors ---------------------------------------------------------------------


async def test_unreachable_api_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = await asyncio.to_thread(invoke, ["ctl", "--api", f"127.0.0.1:{port}", "--timeout", "2", "list"])
    assert code == 1
    assert f"cannot reach the REST API at http://127.0.0.1:{port}/cluster" in capsys.readouterr().err


async def test_second_api_url_used_when_first_is_down(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code = await asyncio.to_thread(invoke, ["ctl", "--api", dead, "--api", fake.base, "list", "-f", "json"])
    assert code == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


async def test_basic_auth_from_options_and_env(fake: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    assert await run_ctl(fake, "pause", "--user", "admin", "--password", "s3cret") == 0
    token = base64.b64encode(b"admin:s3cret").decode()
    assert fake.requests("PATCH", "config")[0].headers["Authorization"] == f"Basic {token}"
    monkeypatch.setenv("RAFTPG_CTL_USER", "ops")
    monkeypatch.setenv("RAFTPG_CTL_PASSWORD", "pw")
    assert await run_ctl(fake, "resume") == 0
    token = base64.b64encode(b"ops:pw").decode()
    assert fake.requests("PATCH", "config")[1].headers["Authorization"] == f"Basic {token}"


async def test_config_file_gives_url_auth_and_dsn_user(fake: FakeApi, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    port = fake.base.rsplit(":", 1)[1]
    text = sample_config(name="n1").replace('connect_address: "127.0.0.1:8008"', f'connect_address: "127.0.0.1:{port}"')
    data = yaml.safe_load(text)
    path = tmp_path / "node.yml"
    path.write_text(text)
    code = await asyncio.to_thread(invoke, ["ctl", "-c", str(path), "dsn", "--role", "primary"])
    assert code == 0
    assert capsys.readouterr().out.strip() == "host=127.0.0.1 port=5432 user=postgres"
    assert await asyncio.to_thread(invoke, ["ctl", "pause", "-c", str(path)]) == 0  # options after the verb
    auth = data["restapi"]["authentication"]
    token = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
    assert fake.requests("PATCH", "config")[0].headers["Authorization"] == f"Basic {token}"


async def test_bad_config_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("scope: [\n")
    assert await asyncio.to_thread(invoke, ["ctl", "-c", str(path), "list"]) == 1
    assert f"cannot use {path}" in capsys.readouterr().err


def test_missing_verb_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        invoke(["ctl"])
    assert exc.value.code == 2


def test_no_api_given_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(["ctl", "list"]) == 2
    assert "-c NODE.yml or --api URL" in capsys.readouterr().err


# -- pure helpers ---------------------------------------------------------------------------------


def test_merge_patch_round_trips() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    new = {"a": 1, "b": {"c": 5}, "e": [1, 2], "f": {"g": True}}
    patch = make_patch(old, new)
    assert patch == {"b": {"c": 5, "d": None}, "e": [1, 2], "f": {"g": True}}
    assert apply_patch(old, patch) == new
    assert make_patch(new, new) == {}


def test_set_path_and_assignments() -> None:
    path, value = parse_assignment("postgresql.parameters.work_mem='4MB'")
    assert path == ("postgresql", "parameters", "work_mem") and value == "4MB"
    assert set_path({}, path, value) == {"postgresql": {"parameters": {"work_mem": "4MB"}}}
    assert set_path({"a": {"b": 1}}, ("a", "b"), None) == {"a": {}}
    assert set_path({"a": 1}, ("x", "y"), None) == {"a": 1}
    assert parse_assignment("max_connections=150", ("postgresql", "parameters"))[1] == 150
    for bad in ("novalue", "=3", "a..b=1", "a=[1"):
        with pytest.raises(UsageError):
            parse_assignment(bad)
    with pytest.raises(UsageError, match="not a mapping"):
        set_path({"ttl": 10}, ("ttl", "x"), 1)


def test_small_formatters() -> None:
    assert lag_mb(3 * MB) == 3 and lag_mb("unknown") == "unknown" and lag_mb(None) is None
    assert pg_version(150004) == "15.4" and pg_version(90624) == "9.6.24" and pg_version(None) is None
    assert parse_when("now") is None and parse_when(None) is None
    assert parse_when("2030-01-01T12:00+02:00") == "2030-01-01T12:00:00+02:00"
    naive = parse_when("2030-01-01T12:00")  # local time: a zone is added, the wall time kept
    assert naive is not None and naive.startswith("2030-01-01T12:00:00")
    assert datetime.fromisoformat(naive).tzinfo is not None
    with pytest.raises(UsageError):
        parse_when("tomorrow")
    grid = render_grid(("A", "B"), [["x", None]], "Cluster: demo")
    assert grid.splitlines()[0].startswith("+ Cluster: demo")


def test_views_tolerate_missing_and_odd_fields() -> None:
    view = ClusterView.from_json({"members": [{"name": "a"}, "junk", {"name": "b", "role": "leader",
                                                                     "port": "5433", "receive_lsn": 83886080}]})
    assert view.scope == "?" and view.names == ("a", "b")
    assert view.leader is not None and view.leader.name == "b" and view.leader.port == 5433
    assert view.member("b") is not None and view.member("b").receive_lsn == "0/5000000"  # type: ignore[union-attr]
    assert ClusterView.from_json(None).members == ()
    demoting = ClusterView.from_json({"members": [{"name": "old", "role": "primary"},
                                                  {"name": "new", "role": "leader"}]})
    assert demoting.leader is not None and demoting.leader.name == "new"  # no lease, not the leader
    assert HistoryEntry.from_json([3]).timeline == 3
    assert HistoryEntry.from_json("junk").reason == ""


def test_topology_follows_replicatefrom_and_survives_cycles() -> None:
    view = ClusterView.from_json({"members": [
        {"name": "p", "role": "leader"},
        {"name": "c", "role": "replica", "tags": {"replicatefrom": "r"}},
        {"name": "r", "role": "replica"},
        {"name": "x", "role": "replica", "tags": {"replicatefrom": "y"}},
    ]})
    assert [(d, m.name) for d, m in topology_order(view)] == [(0, "p"), (1, "r"), (2, "c"), (1, "x")]
    cyclic = ClusterView.from_json({"members": [
        {"name": "a", "role": "replica", "tags": {"replicatefrom": "b"}},
        {"name": "b", "role": "replica", "tags": {"replicatefrom": "a"}},
    ]})
    assert sorted(m.name for _, m in topology_order(cyclic)) == ["a", "b"]


async def test_rolling_restart_dry_run_of_a_stopped_run_shows_what_is_done_and_changes_nothing(
        fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    fake.paused = True
    run = live_run(1893456000.0) | {"halted": "n3: not seen within 180s", "step": ""}
    run["started"] = {"n1": 1893456000.0, "n2": 1.0, "n3": 1893456002.0}  # n2's postmaster is a new one
    fake.operation = {"revision": 5, "record": run}
    assert await run_ctl(fake, "rolling-restart", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "continuing an interrupted run" in out and "stopped by opshost (pid 4242): n3: not seen" in out
    rows = [[c.strip() for c in line.split("|")[1:4]] for line in out.splitlines() if line.startswith("| n")]
    assert ["n2", "restart PostgreSQL", "done"] in rows and ["n3", "restart PostgreSQL", "to do"] in rows
    assert fake.requests("PUT", "operations/rolling_restart") == [] and fake.operation["revision"] == 5
