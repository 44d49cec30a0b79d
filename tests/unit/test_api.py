"""The REST API's HTTP layer against a fake NodeBackend: status codes, documents, validation, auth."""

from __future__ import annotations

import base64
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from raftpg import __version__
from raftpg.api import ApiOptions, ClusterInfo, make_app, start_api
from raftpg.api.config_edit import parse_if_match
from raftpg.api.health import parse_size
from raftpg.cli.certs import write_ca, write_node_cert
from raftpg.config import Auth, DynamicConfig, Tags
from raftpg.consensus.errors import NoQuorum
from raftpg.consensus.model import Lease, RaftStatus, Snapshot
from raftpg.ha.status import NodeStatus
from raftpg.http.problems import FailureKind, PeerProblem
from raftpg.mergepatch import apply_patch
from tests.unit.api_fakes import (
    LEADER_LSN,
    MB,
    NOW,
    WALL,
    FakeBackend,
    make_cluster,
    make_settings,
    member,
    primary_status,
    replica_status,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


@contextlib.asynccontextmanager
async def api(backend: FakeBackend, action_timeout: float = 1.0) -> AsyncIterator[TestClient[Any, Any]]:
    options = ApiOptions(action_timeout=action_timeout, poll_interval=0.01, wall_clock=lambda: WALL)
    async with TestClient(TestServer(make_app(backend, options))) as client:
        yield client


async def status_of(backend: FakeBackend, path: str, method: str = "GET") -> int:
    async with api(backend) as client:
        response = await client.request(method, path)
        return response.status


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).isoformat()


def test_cluster_info_from_snapshot() -> None:
    lease = Lease(holder="node1", instance_id="i1", version=9, revision=3, ttl=10.0, lsn_at_handover=None,
                  bootstrapping=False, applied_at=NOW)
    snapshot = Snapshot(
        scope="demo", initialize="7312345678901234567", lease=lease, members={"node1": member("primary", 1)},
        member_applied_at={"node1": NOW}, config={"pause": True}, config_version=6, failover=None,
        failover_dropped=None, sync={"leader": "node1", "members": []}, history=(), last_applied=40,
    )
    info = ClusterInfo.from_snapshot(snapshot)
    assert (info.scope, info.lease_holder, info.lease_version, info.config_version) == ("demo", "node1", 9, 6)
    assert info.paused is True
    assert info.members["node1"]["role"] == "primary"


# --------------------------------------------------------------------------- health checks


@pytest.mark.parametrize("path", ["/", "/primary", "/master", "/read-write", "/read-only"])
async def test_primary_paths_answer_200_for_a_writable_primary(path: str) -> None:
    async with api(FakeBackend(primary_status())) as client:
        response = await client.get(path)
        assert response.status == 200
        body = await response.json()
        assert body["role"] == "primary"
        assert body["state"] == "running"
        assert body["xlog"] == {"location": LEADER_LSN}


@pytest.mark.parametrize(
    ("changes", "clock", "expected"),
    [
        ({}, NOW, 200),
        ({}, NOW + 4.49, 200),
        ({}, NOW + 4.5, 503),  # deadline minus margin reached: the fence may act soon
        ({"lease_deadline": None}, NOW, 503),  # the log says "holder == me" but we renewed nothing
        ({"pg_running": False}, NOW, 503),
        ({"in_recovery": True}, NOW, 503),
        ({"in_recovery": None}, NOW, 503),
        ({"role": "demoting"}, NOW, 503),
    ],
)
async def test_primary_requires_own_unexpired_lease_and_running_primary(
    changes: dict[str, Any], clock: float, expected: int
) -> None:
    backend = FakeBackend(primary_status(**changes))
    backend.clock = clock
    assert await status_of(backend, "/primary") == expected


async def test_leader_is_the_lease_whatever_postgres_does() -> None:
    backend = FakeBackend(primary_status(pg_running=False, state="starting"))
    assert await status_of(backend, "/leader") == 200
    assert await status_of(backend, "/primary") == 503
    backend.node_status = replica_status()
    assert await status_of(backend, "/leader") == 503


@pytest.mark.parametrize("path", ["/standby-leader", "/standby_leader"])
async def test_standby_leader_is_always_503(path: str) -> None:
    assert await status_of(FakeBackend(primary_status()), path) == 503
    assert await status_of(FakeBackend(replica_status(), make_cluster("node2")), path) == 503


@pytest.mark.parametrize(
    ("status", "replica", "read_only"),
    [
        (replica_status(), 200, 200),
        (primary_status(), 503, 200),
        (replica_status(tags=Tags(noloadbalance=True)), 503, 503),
        (replica_status(pg_running=False, state="stopped"), 503, 503),
        (replica_status(state="starting"), 503, 503),
    ],
)
async def test_replica_and_read_only(status: NodeStatus, replica: int, read_only: int) -> None:
    backend = FakeBackend(status, make_cluster("node2"))
    assert await status_of(backend, "/replica") == replica
    assert await status_of(backend, "/read-only") == read_only


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1048576", 1048576), ("1024kB", 1048576), ("16MB", 16 * MB), ("1GB", 1024 * MB), ("1gb", 1024 * MB),
        ("2 TB", 2 * 1024**4), ("0", 0), ("abc", None), ("-1", None), ("1.5MB", None), ("10XB", None), ("", None),
    ],
)
def test_parse_size(text: str, expected: int | None) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", 200),
        ("?lag=16MB", 200),
        ("?lag=1048576", 200),  # exactly 1 MB behind (received position counts)
        ("?lag=1048575", 503),
        ("?lag=512kB", 503),
        ("?lag=nonsense", 503),
    ],
)
async def test_replica_lag_against_the_leaders_published_lsn(query: str, expected: int) -> None:
    backend = FakeBackend(replica_status(), make_cluster("node2"))
    assert await status_of(backend, "/replica" + query) == expected


async def test_replica_lag_passes_when_the_leader_position_is_unknown() -> None:
    cluster = make_cluster(None)
    assert await status_of(FakeBackend(replica_status(), cluster), "/replica?lag=1kB") == 200
    members = dict(make_cluster("node2").members)
    members["node2"] = member("primary", None)
    cluster = make_cluster("node2", members=members)
    assert await status_of(FakeBackend(replica_status(), cluster), "/replica?lag=1kB") == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?tag_nofailover=false", 200),
        ("?tag_nofailover=False", 200),
        ("?tag_nofailover=true", 503),
        ("?tag_failover_priority=1", 200),
        ("?tag_failover_priority=2", 503),
        ("?tag_nofailover=false&tag_clonefrom=true", 503),
        ("?tag_datacenter=east", 503),  # a tag this member does not have
        ("?replication_state=streaming", 200),
        ("?replication_state=stopped", 503),
    ],
)
async def test_replica_tag_and_state_filters(query: str, expected: int) -> None:
    backend = FakeBackend(replica_status(), make_cluster("node2"))
    assert await status_of(backend, "/replica" + query) == expected


async def test_tag_filters_do_not_apply_to_primary_checks() -> None:
    assert await status_of(FakeBackend(primary_status()), "/primary?tag_datacenter=east") == 200


@pytest.mark.parametrize(
    ("changes", "sync", "asynchronous", "quorum", "read_only_sync"),
    [
        ({"sync_standby": True}, 200, 503, 503, 200),
        ({"quorum_standby": True}, 503, 503, 200, 503),
        ({}, 503, 200, 503, 503),
        ({"sync_standby": True, "tags": Tags(noloadbalance=True)}, 503, 503, 503, 503),
    ],
)
async def test_sync_async_quorum(changes: dict[str, Any], sync: int, asynchronous: int, quorum: int,
                                 read_only_sync: int) -> None:
    backend = FakeBackend(replica_status(**changes), make_cluster("node2"))
    assert await status_of(backend, "/sync") == sync
    assert await status_of(backend, "/synchronous") == sync
    assert await status_of(backend, "/async") == asynchronous
    assert await status_of(backend, "/asynchronous") == asynchronous
    assert await status_of(backend, "/quorum") == quorum
    assert await status_of(backend, "/read-only-sync") == read_only_sync


async def test_read_only_sync_includes_the_primary() -> None:
    backend = FakeBackend(primary_status())
    assert await status_of(backend, "/read-only-sync") == 200
    assert await status_of(backend, "/read-only-quorum") == 200
    assert await status_of(backend, "/sync") == 503


async def test_health_follows_postgres_running() -> None:
    assert await status_of(FakeBackend(replica_status(), make_cluster("node2")), "/health") == 200
    stopped = replica_status(pg_running=False, state="stopped")
    assert await status_of(FakeBackend(stopped, make_cluster("node2")), "/health") == 503


@pytest.mark.parametrize(
    ("status", "age", "expected"),
    [
        (primary_status(), 9.9, 200),  # ttl is 10 (DynamicConfig default)
        (primary_status(), 10.5, 503),
        (replica_status(), 19.9, 200),  # 2 * ttl on a replica
        (replica_status(), 20.5, 503),
    ],
)
async def test_liveness_tracks_the_ha_loop(status: NodeStatus, age: float, expected: int) -> None:
    backend = FakeBackend(replace(status, updated_at=NOW - age), make_cluster(status.lease_holder))
    if status.role == "primary":
        backend.node_status = replace(backend.node_status, lease_deadline=None)  # liveness ignores the lease
    assert await status_of(backend, "/liveness") == expected


async def test_liveness_uses_the_ttl_of_the_replicated_config() -> None:
    cluster = make_cluster("node2", config={**DynamicConfig().to_dict(), "ttl": 30}, config_version=9)
    backend = FakeBackend(replica_status(updated_at=NOW - 50), cluster)
    assert await status_of(backend, "/liveness") == 200
    backend.clock = NOW + 11
    assert await status_of(backend, "/liveness") == 503


@pytest.mark.parametrize(
    ("status", "query", "expected"),
    [
        (primary_status(), "", 200),
        (replica_status(), "", 200),  # replayed 2 MB behind, within maximum_lag_on_failover (3 MB)
        (replica_status(streaming=False), "", 503),
        (replica_status(), "?lag=1MB", 503),  # replayed position is 2 MB behind
        (replica_status(), "?lag=1MB&mode=write", 200),  # received position is 1 MB behind
        (replica_status(), "?lag=3MB", 200),
        (replica_status(), "?mode=sideways", 503),
        (replica_status(pg_running=False, streaming=False, state="stopped"), "", 503),
    ],
)
async def test_readiness(status: NodeStatus, query: str, expected: int) -> None:
    config = {**DynamicConfig().to_dict(), "maximum_lag_on_failover": 3 * MB}
    cluster = make_cluster(status.lease_holder, config=config, config_version=11)
    assert await status_of(FakeBackend(status, cluster), "/readiness" + query) == expected


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
async def test_head_and_options_answer_with_status_only(method: str) -> None:
    async with api(FakeBackend(primary_status())) as client:
        ok = await client.request(method, "/primary")
        assert ok.status == 200
        assert await ok.read() == b""
        refused = await client.request(method, "/replica")
        assert refused.status == 503
        assert await refused.read() == b""


async def test_health_checks_never_ask_raft() -> None:
    class NoRaft(FakeBackend):
        def raft_status(self) -> RaftStatus:
            raise AssertionError("a health check asked Raft")

    async with api(NoRaft(primary_status())) as client:
        for path in ("/", "/primary", "/replica", "/health", "/liveness", "/readiness", "/leader"):
            response = await client.get(path)
            assert response.status in (200, 503)
            assert "raft" not in (await response.json())["raftpg"]


# --------------------------------------------------------------------------- status documents


async def test_patroni_document_of_a_primary() -> None:
    async with api(FakeBackend(primary_status(pending_restart=True))) as client:
        response = await client.get("/patroni")
        assert response.status == 200
        body = await response.json()
    assert body["state"] == "running"
    assert body["role"] == "primary"
    assert body["server_version"] == 150004
    assert body["xlog"] == {"location": LEADER_LSN}
    assert body["timeline"] == 3
    assert body["database_system_identifier"] == "7312345678901234567"
    assert body["postmaster_start_time"] == "2024-01-01 00:00:00+00:00"
    assert body["patroni"] == {"version": __version__, "scope": "demo", "name": "node1"}
    assert body["replication"][0]["application_name"] == "node2"
    assert body["replication"][0]["sync_state"] == "sync"
    assert body["pending_restart"] is True
    assert body["pause"] is False
    assert body["tags"]["nofailover"] is False
    assert body["dcs_last_seen"] == int(WALL - 0.5)
    assert "cluster_unlocked" not in body
    own = body["raftpg"]
    assert own["lease_holder"] == "node1"
    assert own["lease_version"] == 5
    assert own["lease_time_left"] == pytest.approx(5.0)
    assert own["raft"]["term"] == 7
    assert own["raft"]["commit_index"] == 120
    assert own["raft"]["partners"] == {"127.0.0.1:5011": True, "127.0.0.1:5012": False}
    assert own["raft"]["tick_thread_alive"] is True
    assert own["peer_problems"] == {}
    assert own["needs_reinit"] is None


async def test_patroni_shows_peers_failing_for_tls_or_authentication() -> None:
    backend = FakeBackend()
    backend.problems = {"node2": PeerProblem(FailureKind.TLS, "certificate verify failed", WALL - 60)}
    async with api(backend) as client:
        patroni = await (await client.get("/patroni")).json()
        health = await (await client.get("/primary")).json()
    assert patroni["raftpg"]["peer_problems"] == {
        "node2": {"kind": "TLS", "reason": "certificate verify failed", "since": iso(WALL - 60)}}
    assert "peer_problems" not in health["raftpg"]


async def test_patroni_document_of_a_replica_in_an_unlocked_cluster() -> None:
    status = replica_status(lease_holder=None, paused=True)
    async with api(FakeBackend(status, make_cluster(None))) as client:
        body = await (await client.get("/patroni")).json()
    assert body["role"] == "replica"
    assert body["xlog"]["received_location"] == LEADER_LSN - MB
    assert body["xlog"]["replayed_location"] == LEADER_LSN - 2 * MB
    assert body["replication_state"] == "streaming"
    assert body["cluster_unlocked"] is True
    assert body["pause"] is True
    assert body["raftpg"]["lease_time_left"] is None


async def test_patroni_answers_even_when_raft_status_fails() -> None:
    class BrokenRaft(FakeBackend):
        def raft_status(self) -> RaftStatus:
            raise RuntimeError("tick thread gone")

    async with api(BrokenRaft()) as client:
        response = await client.get("/patroni")
        assert response.status == 200
        assert "raft" not in (await response.json())["raftpg"]


async def test_cluster_document() -> None:
    failover = {"request_id": "r1", "leader": "node1", "candidate": "node3", "scheduled_at": WALL + 3600,
                "accept_data_loss": False}
    cluster = make_cluster("node1", failover=failover)
    async with api(FakeBackend(primary_status(), cluster)) as client:
        body = await (await client.get("/cluster")).json()
    members = {m["name"]: m for m in body["members"]}
    assert [m["name"] for m in body["members"]] == ["node1", "node2", "node3"]
    assert members["node1"]["role"] == "leader"
    assert "lag" not in members["node1"]
    assert members["node2"]["role"] == "sync_standby"
    assert members["node2"]["lag"] == 0
    assert members["node3"]["role"] == "replica"
    assert members["node3"]["lag"] == 3 * MB
    assert members["node3"]["lsn"] == "0/4D00000"
    assert members["node3"]["api_url"] == "http://127.0.0.1:8008/patroni"
    assert members["node3"]["state"] == "running"
    assert members["node3"]["host"] == "127.0.0.1"
    assert members["node3"]["port"] == 5432
    assert members["node3"]["timeline"] == 3
    assert body["scope"] == "demo"
    assert body["pause"] is False
    assert body["scheduled_switchover"] == {"at": iso(WALL + 3600), "from": "node1", "to": "node3"}
    assert body["raftpg"]["sync"] == {"leader": "node1", "members": ["node2"], "quorum": 1}


async def test_cluster_roles_in_quorum_mode_and_unknown_lag() -> None:
    config = {**DynamicConfig().to_dict(), "synchronous_mode": "quorum"}
    cluster = make_cluster(None, config=config, config_version=12)
    async with api(FakeBackend(replica_status(), cluster)) as client:
        body = await (await client.get("/cluster")).json()
    members = {m["name"]: m for m in body["members"]}
    assert members["node2"]["role"] == "quorum_standby"
    assert members["node1"]["lag"] == "unknown"
    assert "scheduled_switchover" not in body


async def test_history_rows_are_patroni_shaped() -> None:
    async with api(FakeBackend()) as client:
        body = await (await client.get("/history")).json()
    assert body == [[2, 0x3000000, "switchover", iso(WALL - 60), "node1"]]


_SAMPLE = re.compile(r'^(raftpg_[a-z_]+)\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} (-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)$')


def parse_exposition(text: str) -> dict[str, list[tuple[str, float]]]:
    """A strict reader of the text format: every metric has HELP and TYPE before its samples."""
    samples: dict[str, list[tuple[str, float]]] = {}
    declared: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            kind, name = line.split(" ")[1:3]
            assert kind in ("HELP", "TYPE"), line
            declared.setdefault(name, set()).add(kind)
            if kind == "TYPE":
                assert line.split(" ")[3] in ("gauge", "counter"), line
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a valid sample line: {line!r}"
        name = match.group(1)
        assert declared.get(name) == {"HELP", "TYPE"}, f"{name} sampled before HELP and TYPE"
        samples.setdefault(name, []).append((match.group(2), float(match.group(3))))
    return samples


async def test_metrics_are_prometheus_text() -> None:
    async with api(FakeBackend(primary_status())) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    assert text.endswith("\n")
    metrics = parse_exposition(text)

    def value(name: str) -> float:
        ((labels, number),) = metrics[name]
        assert 'scope="demo"' in labels and 'name="node1"' in labels
        return number

    assert value("raftpg_primary") == 1
    assert value("raftpg_replica") == 0
    assert value("raftpg_postgres_running") == 1
    assert value("raftpg_xlog_location") == LEADER_LSN
    assert value("raftpg_postgres_timeline") == 3
    assert value("raftpg_lease_version") == 5
    assert value("raftpg_lease_time_left_seconds") == pytest.approx(5.0)
    assert value("raftpg_lease_holder") == 1
    assert value("raftpg_is_paused") == 0
    assert value("raftpg_pending_restart") == 0
    assert value("raftpg_raft_term") == 7
    assert value("raftpg_raft_commit_index") == 120
    assert value("raftpg_raft_leader") == 1
    assert value("raftpg_raft_tick_thread_alive") == 1
    assert "raftpg_replication_lag_bytes" not in metrics  # unknown on a primary: no sample
    partners = dict(metrics["raftpg_raft_partner_connected"])
    assert partners['scope="demo",name="node1",addr="127.0.0.1:5011"'] == 1
    assert partners['scope="demo",name="node1",addr="127.0.0.1:5012"'] == 0


async def test_metrics_show_a_member_waiting_for_reinit_and_its_peer_problems() -> None:
    backend = FakeBackend(replica_status(needs_reinit="pg_rewind cannot succeed: run `raftpg ctl reinit demo node1`"))
    backend.problems["node3"] = PeerProblem(FailureKind.TLS, "certificate verify failed", since=1.0)
    async with api(backend) as client:
        metrics = parse_exposition(await (await client.get("/metrics")).text())
    assert metrics["raftpg_needs_reinit"] == [('scope="demo",name="node1"', 1)]
    assert metrics["raftpg_peer_problem"] == [('scope="demo",name="node1",peer="node3",kind="TLS"', 1)]


async def test_a_member_waiting_for_reinit_says_so_and_names_the_fix() -> None:
    why = "pg_rewind from node2 cannot succeed; to re-clone it: raftpg ctl reinit demo node3"
    cluster = make_cluster("node1")
    cluster = replace(cluster, members={**cluster.members, "node3": {**cluster.members["node3"], "needs_reinit": why}})
    async with api(FakeBackend(replica_status(needs_reinit=why), cluster)) as client:
        patroni = await (await client.get("/patroni")).json()
        members = {m["name"]: m for m in (await (await client.get("/cluster")).json())["members"]}
    assert patroni["raftpg"]["needs_reinit"] == why
    assert members["node3"]["needs_reinit"] == why
    assert "needs_reinit" not in members["node2"]


async def test_metrics_without_problems() -> None:
    async with api(FakeBackend(primary_status())) as client:
        metrics = parse_exposition(await (await client.get("/metrics")).text())
    assert metrics["raftpg_needs_reinit"] == [('scope="demo",name="node1"', 0)]
    assert "raftpg_peer_problem" not in metrics


async def test_metrics_of_a_lagging_replica() -> None:
    async with api(FakeBackend(replica_status(), make_cluster("node2"))) as client:
        metrics = parse_exposition(await (await client.get("/metrics")).text())
    assert metrics["raftpg_primary"][0][1] == 0
    assert metrics["raftpg_replica"][0][1] == 1
    assert metrics["raftpg_replication_lag_bytes"][0][1] == MB
    assert metrics["raftpg_lease_time_left_seconds"][0][1] == 0


DATABASE_ONLY_METRICS = (
    "raftpg_postgres_running", "raftpg_primary", "raftpg_replica", "raftpg_sync_standby", "raftpg_quorum_standby",
    "raftpg_xlog_location", "raftpg_xlog_received_location", "raftpg_xlog_replayed_location",
    "raftpg_replication_lag_bytes", "raftpg_postgres_streaming", "raftpg_postgres_timeline",
    "raftpg_postgres_server_version", "raftpg_pending_restart", "raftpg_needs_reinit", "raftpg_peer_problem",
    "raftpg_lease_time_left_seconds",
)


async def test_metrics_of_a_witness_say_so_and_leave_the_database_out() -> None:
    """No zeros for PostgreSQL a witness never runs (an alert on postgres_running == 0 would fire);
    the Raft and cluster-wide metrics stay, with HELP and TYPE like every other."""
    witness = NodeStatus(name="witness1", scope="demo", role="witness", state="running", lease_holder="node1",
                         lease_version=5, updated_at=NOW - 0.5)
    backend = FakeBackend(witness)
    backend.problems["node3"] = PeerProblem(FailureKind.TLS, "certificate verify failed", since=1.0)
    async with api(backend) as client:
        text = await (await client.get("/metrics")).text()
    metrics = parse_exposition(text)
    assert metrics["raftpg_witness"] == [('scope="demo",name="witness1"', 1)]
    assert "# TYPE raftpg_witness gauge" in text and "# HELP raftpg_witness " in text
    for name in DATABASE_ONLY_METRICS:
        assert name not in text, name
    assert metrics["raftpg_lease_holder"][0][1] == 0 and metrics["raftpg_cluster_unlocked"][0][1] == 0
    assert metrics["raftpg_raft_has_quorum"][0][1] == 1 and metrics["raftpg_raft_term"][0][1] == 7
    assert metrics["raftpg_status_age_seconds"][0][1] == pytest.approx(0.5)


async def test_metrics_of_a_database_member_say_it_is_no_witness() -> None:
    for status in (primary_status(), replica_status()):
        async with api(FakeBackend(status)) as client:
            metrics = parse_exposition(await (await client.get("/metrics")).text())
        assert metrics["raftpg_witness"] == [('scope="demo",name="node1"', 0)]
        assert all(name in metrics for name in DATABASE_ONLY_METRICS if name not in (
            "raftpg_peer_problem", "raftpg_replication_lag_bytes")), sorted(metrics)


async def test_raft_endpoint() -> None:
    async with api(FakeBackend()) as client:
        body = await (await client.get("/raft")).json()
    assert body["term"] == 7
    assert body["leader"] == "127.0.0.1:5010"
    assert body["has_quorum"] is True
    assert body["journal_bytes"] == 4096


# --------------------------------------------------------------------------- dynamic configuration


def test_merge_patch_semantics() -> None:
    target: dict[str, Any] = {
        "ttl": 10, "postgresql": {"parameters": {"a": "1", "b": "2"}, "use_slots": True}, "x": [1],
    }
    patched = apply_patch(target, {"postgresql": {"parameters": {"a": None, "c": "3"}}, "x": {"y": 1}, "z": None})
    assert patched == {"ttl": 10, "postgresql": {"parameters": {"b": "2", "c": "3"}, "use_slots": True},
                       "x": {"y": 1}}
    assert target["postgresql"]["parameters"] == {"a": "1", "b": "2"}  # the input is not modified


@pytest.mark.parametrize(("header", "expected"), [(None, None), ("*", None), ("7", 7), ('"7"', 7), ('W/"7"', 7)])
def test_parse_if_match(header: str | None, expected: int | None) -> None:
    assert parse_if_match(header) == expected


async def test_get_config_carries_its_version() -> None:
    async with api(FakeBackend()) as client:
        response = await client.get("/config")
        assert response.status == 200
        assert response.headers["ETag"] == '"4"'
        assert (await response.json())["ttl"] == 10


async def test_patch_config_merges_and_null_deletes() -> None:
    base = DynamicConfig(parameters={"max_connections": "100", "work_mem": "4MB"}).to_dict()
    backend = FakeBackend(cluster=make_cluster(config=base, config_version=4))
    async with api(backend) as client:
        response = await client.patch("/config", json={
            "loop_wait": 1, "postgresql": {"parameters": {"work_mem": None, "max_connections": "200"}},
        })
        assert response.status == 200, await response.text()
        body = await response.json()
    stored, expected_version = backend.config_writes[-1]
    assert expected_version == 4
    assert stored["loop_wait"] == 1
    assert stored["ttl"] == 10
    assert stored["postgresql"]["parameters"]["max_connections"] == "200"
    assert "work_mem" not in stored["postgresql"]["parameters"]
    assert body["config"] == stored
    assert body["config_version"] == 5
    assert body["warnings"] == []
    assert response.headers["ETag"] == '"5"'


async def test_patch_pause() -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        assert (await client.patch("/config", json={"pause": True})).status == 200
    assert backend.cluster_info.paused is True


async def test_put_config_replaces() -> None:
    base = DynamicConfig(loop_wait=1, parameters={"work_mem": "4MB"}).to_dict()
    backend = FakeBackend(cluster=make_cluster(config=base, config_version=4))
    async with api(backend) as client:
        response = await client.put("/config", json={"ttl": 12})
        assert response.status == 200, await response.text()
    stored, _ = backend.config_writes[-1]
    assert stored["ttl"] == 12
    assert stored["loop_wait"] == DynamicConfig().loop_wait  # not carried over: PUT replaces
    assert "work_mem" not in stored["postgresql"]["parameters"]


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_if_match(method: str) -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        stale = await client.request(method, "/config", json={"ttl": 12}, headers={"If-Match": '"3"'})
        assert stale.status == 412
        assert (await stale.json())["config_version"] == 4
        assert backend.config_writes == []
        current = await client.request(method, "/config", json={"ttl": 12}, headers={"If-Match": '"4"'})
        assert current.status == 200
        assert len(backend.config_writes) == 1
        bad = await client.request(method, "/config", json={"ttl": 12}, headers={"If-Match": "latest"})
        assert bad.status == 400


async def test_lost_compare_and_set_is_reported() -> None:
    backend = FakeBackend()
    backend.store_ok = False
    async with api(backend) as client:
        assert (await client.patch("/config", json={"ttl": 12})).status == 409
        assert (await client.patch("/config", json={"ttl": 12}, headers={"If-Match": "4"})).status == 412


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("PATCH", {"ttl": 1}),
        ("PATCH", {"loop_wait": "often"}),
        ("PATCH", {"no_such_setting": 1}),
        ("PATCH", {"postgresql": {"parameters": {"port": "5433"}}}),
        ("PUT", {"ttl": 10, "loop_wait": 9, "retry_timeout": 9}),
    ],
)
async def test_invalid_config_is_refused_and_nothing_changes(method: str, body: dict[str, Any]) -> None:
    backend = FakeBackend()
    before = backend.cluster_info
    async with api(backend) as client:
        response = await client.request(method, "/config", json=body)
        assert response.status == 400
        error = await response.json()
    assert error["error"] == "invalid dynamic configuration"
    assert error["problems"] and all(isinstance(p, str) for p in error["problems"])
    assert backend.config_writes == []
    assert backend.cluster_info is before


async def test_ignored_patroni_settings_come_back_as_warnings() -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        response = await client.patch("/config", json={"failsafe_mode": True})
        assert response.status == 200
        body = await response.json()
    assert any("failsafe_mode" in warning for warning in body["warnings"])
    assert "failsafe_mode" not in backend.config_writes[-1][0]


# --------------------------------------------------------------------------- switchover and failover


async def post(backend: FakeBackend, path: str, body: Any, action_timeout: float = 1.0) -> tuple[int, Any]:
    async with api(backend, action_timeout) as client:
        response = await client.post(path, json=body)
        return response.status, await response.json()


async def test_immediate_switchover_waits_for_the_lease_to_move() -> None:
    backend = FakeBackend()
    backend.move_lease_to = "node2"
    status, body = await post(backend, "/switchover", {"leader": "node1", "candidate": "node2"})
    assert status == 200
    assert body["message"] == 'Successfully switched over to "node2"'
    (request,) = backend.failover_writes
    assert request is not None
    assert set(request) == {"request_id", "leader", "candidate", "scheduled_at", "accept_data_loss"}
    assert re.fullmatch(r"[0-9a-f]{32}", request["request_id"])
    assert (request["leader"], request["candidate"], request["scheduled_at"], request["accept_data_loss"]) == (
        "node1", "node2", None, False)


async def test_switchover_without_candidate_succeeds_on_any_new_holder() -> None:
    backend = FakeBackend()
    backend.move_lease_to = "node3"
    status, body = await post(backend, "/switchover", {"leader": "node1"})
    assert status == 200
    assert body["message"] == 'Successfully switched over to "node3"'


async def test_switchover_that_does_not_happen_times_out_with_503() -> None:
    backend = FakeBackend()
    status, body = await post(backend, "/switchover", {"leader": "node1", "candidate": "node2"}, 0.2)
    assert status == 503
    assert "status unknown" in body["error"]


async def test_switchover_the_leader_drops_fails_at_once_with_its_reason() -> None:
    backend = FakeBackend()
    backend.drop_reason = "switchover cancelled: node2 is not a healthy streaming replica"
    status, body = await post(backend, "/switchover", {"leader": "node1", "candidate": "node2"}, 30.0)
    assert status == 412
    assert body["error"] == ("Switchover not carried out: node1 dropped the request: "
                             "switchover cancelled: node2 is not a healthy streaming replica")


async def test_scheduled_switchover() -> None:
    backend = FakeBackend()
    when = WALL + 3600
    status, body = await post(backend, "/switchover", {"leader": "node1", "scheduled_at": iso(when)})
    assert status == 202
    assert body["message"] == "Switchover scheduled"
    (request,) = backend.failover_writes
    assert request is not None and request["scheduled_at"] == pytest.approx(when)
    assert request["candidate"] is None


@pytest.mark.parametrize(
    ("body", "expected", "fragment"),
    [
        ({"candidate": "node2"}, 400, "only from a specific leader"),
        ({"leader": "node2", "candidate": "node3"}, 412, "leader name does not match"),
        ({"leader": "node1", "candidate": "node1"}, 400, "same"),
        ({"leader": "node1", "candidate": "node9"}, 412, "not a member"),
        ({"leader": "node1", "scheduled_at": iso(WALL - 60)}, 422, "past"),
        ({"leader": "node1", "scheduled_at": "2030-01-01T12:00"}, 400, "time zone"),
        ({"leader": "node1", "scheduled_at": "tomorrow"}, 400, "ISO 8601"),
        ({"leader": "node1", "candidate": 2}, 400, "must be a string"),
        ({"leader": "node1", "accept_data_loss": True}, 400, "unknown key"),
        ({"leader": "node1", "when": "now"}, 400, "unknown key"),
    ],
)
async def test_switchover_validation(body: dict[str, Any], expected: int, fragment: str) -> None:
    backend = FakeBackend()
    status, answer = await post(backend, "/switchover", body)
    assert status == expected
    assert fragment in answer["error"]
    assert backend.failover_writes == []


@pytest.mark.parametrize(
    ("members", "candidate", "fragment"),
    [
        ({"node2": member("replica", LEADER_LSN, state="stopped")}, "node2", "not a running replica"),
        ({"node2": member("replica", LEADER_LSN, tags={"nofailover": True})}, "node2", "nofailover"),
        ({"node2": member("replica", LEADER_LSN, state="stopped"),
          "node3": member("replica", LEADER_LSN, tags={"nofailover": True})}, None, "no good candidates"),
    ],
)
async def test_switchover_needs_a_healthy_candidate(members: dict[str, Any], candidate: str | None,
                                                    fragment: str) -> None:
    cluster = make_cluster("node1")
    cluster = replace(cluster, members={**cluster.members, **members})
    backend = FakeBackend(cluster=cluster)
    status, answer = await post(backend, "/switchover", {"leader": "node1", "candidate": candidate})
    assert status == 412
    assert fragment in answer["error"]
    assert backend.failover_writes == []


async def test_switchover_in_synchronous_mode_only_to_a_sync_member() -> None:
    config = {**DynamicConfig().to_dict(), "synchronous_mode": "on"}
    backend = FakeBackend(cluster=make_cluster("node1", config=config, config_version=8))
    status, answer = await post(backend, "/switchover", {"leader": "node1", "candidate": "node3"})
    assert status == 412
    assert "sync_standby" in answer["error"]
    backend.move_lease_to = "node2"
    status, _ = await post(backend, "/switchover", {"leader": "node1", "candidate": "node2"})
    assert status == 200


async def test_paused_cluster_rules() -> None:
    config = {**DynamicConfig().to_dict(), "pause": True}
    backend = FakeBackend(cluster=make_cluster("node1", config=config, config_version=8))
    status, answer = await post(backend, "/switchover", {"leader": "node1"})
    assert (status, "specific candidate" in answer["error"]) == (400, True)
    when = iso(WALL + 60)
    status, answer = await post(backend, "/switchover", {"leader": "node1", "candidate": "node2", "scheduled_at": when})
    assert (status, "paused" in answer["error"]) == (400, True)
    assert backend.failover_writes == []


async def test_a_second_request_while_one_is_pending_is_refused() -> None:
    pending = {"request_id": "r1", "leader": "node1", "candidate": None, "scheduled_at": WALL + 60,
               "accept_data_loss": False}
    backend = FakeBackend(cluster=make_cluster("node1", failover=pending))
    status, answer = await post(backend, "/switchover", {"leader": "node1", "candidate": "node2"})
    assert status == 409
    assert "already pending" in answer["error"]
    assert backend.failover_writes == []


async def test_delete_switchover() -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        assert (await client.delete("/switchover")).status == 404
        backend.cluster_info = replace(backend.cluster_info, failover={"request_id": "r1", "leader": "node1",
                                                                       "scheduled_at": WALL + 60})
        response = await client.delete("/switchover")
        assert response.status == 200
        assert (await response.json())["message"] == "scheduled switchover deleted"
    assert backend.failover_writes == [None]


async def test_failover_works_without_a_leader() -> None:
    backend = FakeBackend(replica_status(lease_holder=None), make_cluster(None))
    backend.move_lease_to = "node2"
    status, body = await post(backend, "/failover", {"candidate": "node2"})
    assert status == 200
    assert body["message"] == 'Successfully failed over to "node2"'
    (request,) = backend.failover_writes
    assert request is not None
    assert (request["leader"], request["candidate"], request["accept_data_loss"]) == (None, "node2", False)


@pytest.mark.parametrize(
    ("body", "expected", "fragment"),
    [
        ({}, 400, "specific candidate"),
        ({"leader": "node1"}, 400, "specific candidate"),
        ({"candidate": "node2", "scheduled_at": iso(WALL + 60)}, 400, "can't be scheduled"),
        ({"candidate": "node2", "accept_data_loss": "yes"}, 400, "true or false"),
        ({"candidate": "node1"}, 412, "already the leader"),
    ],
)
async def test_failover_validation(body: dict[str, Any], expected: int, fragment: str) -> None:
    backend = FakeBackend()
    status, answer = await post(backend, "/failover", body)
    assert status == expected
    assert fragment in answer["error"]
    assert backend.failover_writes == []


@pytest.mark.parametrize("mode", ["on", "quorum"])
async def test_failover_outside_the_sync_set_needs_accept_data_loss(mode: str) -> None:
    config = {**DynamicConfig().to_dict(), "synchronous_mode": mode}
    backend = FakeBackend(replica_status(lease_holder=None), make_cluster(None, config=config, config_version=8))
    status, answer = await post(backend, "/failover", {"candidate": "node3"})
    assert status == 412
    assert "accept_data_loss" in answer["error"]
    assert backend.failover_writes == []
    backend.move_lease_to = "node3"
    status, _ = await post(backend, "/failover", {"candidate": "node3", "accept_data_loss": True})
    assert status == 200
    (request,) = backend.failover_writes
    assert request is not None and request["accept_data_loss"] is True


async def test_failover_with_a_leader_is_checked_as_a_switchover() -> None:
    backend = FakeBackend()
    status, answer = await post(backend, "/failover", {"leader": "node2", "candidate": "node3"})
    assert status == 412
    assert "leader name does not match" in answer["error"]


async def test_request_that_does_not_commit_is_503() -> None:
    backend = FakeBackend()
    backend.store_ok = False
    status, _ = await post(backend, "/switchover", {"leader": "node1", "candidate": "node2"})
    assert status == 503


async def test_consensus_errors_become_503() -> None:
    backend = FakeBackend()
    backend.error = NoQuorum("no Raft leader")
    status, body = await post(backend, "/switchover", {"leader": "node1", "candidate": "node2"})
    assert status == 503
    assert "no Raft leader" in body["error"]


# --------------------------------------------------------------------------- node actions and Raft


async def test_restart_immediate_and_scheduled() -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        now = await client.post("/restart", json={"role": "master", "restart_pending": True})
        assert now.status == 200
        assert (await now.json())["message"] == "restarted successfully"
        later = await client.post("/restart", json={"schedule": iso(WALL + 120), "postgres_version": "15.5"})
        assert later.status == 202
        empty = await client.post("/restart")
        assert empty.status == 200
    assert backend.calls == [
        ("restart", (None, "primary", None, True)),
        ("restart", (pytest.approx(WALL + 120), None, "15.5", False)),
        ("restart", (None, None, None, False)),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"role": "leader"}, 400),
        ({"postgres_version": "fifteen"}, 400),
        ({"schedule": iso(WALL - 1)}, 422),
        ({"timeout": 30}, 400),
        ({"restart_pending": "yes"}, 400),
    ],
)
async def test_restart_validation(body: dict[str, Any], expected: int) -> None:
    backend = FakeBackend()
    status, answer = await post(backend, "/restart", body)
    assert status == expected
    assert "error" in answer
    assert backend.calls == []


async def test_refused_restart_and_reinitialize_are_503() -> None:
    backend = FakeBackend()
    backend.error = ValueError("I am the leader, can not reinitialize")
    status, answer = await post(backend, "/reinitialize", {"force": True})
    assert (status, answer["error"]) == (503, "I am the leader, can not reinitialize")
    status, _ = await post(backend, "/restart", {})
    assert status == 503


@contextlib.asynccontextmanager
async def supervised_api(backend: FakeBackend, restarts: list[str]) -> AsyncIterator[TestClient[Any, Any]]:
    options = ApiOptions(wall_clock=lambda: WALL, started_at=WALL - 30,
                         restart_daemon=lambda: restarts.append("exit 75"))
    async with TestClient(TestServer(make_app(backend, options))) as client:
        yield client


async def test_daemon_restart_while_paused_exits_for_the_supervisor_and_publishes_the_start() -> None:
    restarts: list[str] = []
    backend = FakeBackend(primary_status(paused=True))
    async with supervised_api(backend, restarts) as client:
        assert (await (await client.get("/patroni")).json())["raftpg"]["started_at"] == WALL - 30
        extra = await client.post("/restart", json={"daemon": True, "role": "primary"})
        assert extra.status == 400
        answer = await client.post("/restart", json={"daemon": True})
        assert answer.status == 202 and (await answer.json())["message"] == "raftpg restarting"
    assert restarts == ["exit 75"] and backend.calls == []


async def test_daemon_restart_refused_unpaused_or_without_a_supervisor() -> None:
    restarts: list[str] = []
    async with supervised_api(FakeBackend(primary_status(paused=False)), restarts) as client:
        unpaused = await client.post("/restart", json={"daemon": True})
        assert unpaused.status == 503 and "paused" in (await unpaused.json())["error"]
    async with api(FakeBackend(primary_status(paused=True))) as client:
        alone = await client.post("/restart", json={"daemon": True})
        assert alone.status == 503 and "supervisor" in (await alone.json())["error"]
        assert "started_at" not in (await (await client.get("/patroni")).json())["raftpg"]
    assert restarts == []


async def test_delete_restart_reload_reinitialize() -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        assert (await client.delete("/restart")).status == 404
        reload = await client.post("/reload")
        assert reload.status == 202
        reinit = await client.post("/reinitialize", json={"force": True})
        assert reinit.status == 200
        assert (await client.post("/reinitialize", json={"from-leader": True})).status == 400
    assert ("reload", None) in backend.calls
    assert ("reinitialize", None) in backend.calls


@pytest.mark.parametrize("state", ["starting", "stopping", "rewinding", "creating replica", "initializing new cluster"])
async def test_reinitialize_during_an_operation_needs_force(state: str) -> None:
    """As Patroni: refused while the member is busy (a restart loop, a clone), carried out with force."""
    backend = FakeBackend(replica_status(state=state, pg_running=False))
    status, answer = await post(backend, "/reinitialize", {})
    assert status == 503
    assert answer["error"] == f"{state} already in progress; reinitialize with force=true to do it anyway"
    assert ("reinitialize", None) not in backend.calls
    status, _ = await post(backend, "/reinitialize", {"force": True})
    assert status == 200 and ("reinitialize", None) in backend.calls


@pytest.mark.parametrize("state", ["running", "stopped"])
async def test_reinitialize_of_an_idle_member_needs_no_force(state: str) -> None:
    backend = FakeBackend(replica_status(state=state))
    status, _ = await post(backend, "/reinitialize", None)
    assert status == 200 and ("reinitialize", None) in backend.calls


async def test_raft_membership() -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        assert (await client.post("/raft/members", json={"addr": "127.0.0.1:5013"})).status == 200
        assert (await client.delete("/raft/members/127.0.0.1:5013")).status == 200
        assert (await client.post("/raft/members", json={"addr": "no-port"})).status == 400
        assert (await client.post("/raft/members", json={})).status == 400
        backend.error = ValueError("127.0.0.1:5014 is not a member")
        refused = await client.delete("/raft/members/127.0.0.1:5014")
        assert refused.status == 409
        assert "not a member" in (await refused.json())["error"]
    assert backend.calls == [("add_raft_member", "127.0.0.1:5013"), ("remove_raft_member", "127.0.0.1:5013")]


# --------------------------------------------------------------------------- bad input and auth


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b'"text"', b'{"leader": NaN}', b"", b"\xff\xfe"],
)
async def test_malformed_bodies_are_400_and_change_nothing(raw: bytes) -> None:
    backend = FakeBackend()
    async with api(backend) as client:
        for method, path in (("POST", "/switchover"), ("POST", "/failover"), ("PATCH", "/config"),
                             ("PUT", "/config"), ("POST", "/raft/members")):
            response = await client.request(method, path, data=raw, headers={"Content-Type": "application/json"})
            assert response.status == 400, (method, path)
            assert isinstance((await response.json())["error"], str)
    assert backend.failover_writes == []
    assert backend.config_writes == []
    assert backend.calls == []


async def test_unknown_paths_and_methods_get_json_errors() -> None:
    async with api(FakeBackend()) as client:
        missing = await client.get("/nope")
        assert missing.status == 404
        assert "error" in await missing.json()
        wrong = await client.post("/primary")
        assert wrong.status == 405
        assert "error" in await wrong.json()
        assert "GET" in wrong.headers["Allow"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/switchover", {"leader": "node1", "candidate": "node2"}),
        ("POST", "/failover", {"candidate": "node2"}),
        ("PATCH", "/config", {"ttl": 12}),
        ("PUT", "/config", {"ttl": 12}),
        ("DELETE", "/switchover", None),
        ("POST", "/restart", {}),
        ("POST", "/reload", None),
        ("POST", "/reinitialize", None),
        ("POST", "/raft/members", {"addr": "127.0.0.1:5013"}),
        ("DELETE", "/raft/members/127.0.0.1:5013", None),
    ],
)
async def test_unsafe_methods_require_authentication(method: str, path: str, body: Any) -> None:
    backend = FakeBackend(settings=make_settings(Auth("admin", "s3cret-pass")))
    backend.move_lease_to = "node2"
    async with api(backend) as client:
        for headers in ({}, basic("admin", "wrong"), basic("root", "s3cret-pass"),
                        {"Authorization": "Basic !!!"}, {"Authorization": "Bearer abc"}):
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert backend.failover_writes == [] and backend.config_writes == [] and backend.calls == []
        response = await client.request(method, path, json=body, headers=basic("admin", "s3cret-pass"))
        assert response.status != 401


async def test_reads_need_no_authentication() -> None:
    backend = FakeBackend(settings=make_settings(Auth("admin", "s3cret-pass")))
    async with api(backend) as client:
        for path in ("/primary", "/patroni", "/cluster", "/config", "/metrics", "/history", "/raft"):
            assert (await client.get(path)).status == 200, path


# --------------------------------------------------------------------------- the server


async def test_start_api_serves_http_and_stops() -> None:
    server = await start_api(FakeBackend())
    try:
        host, port = server.addresses[0]
        async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}/primary") as response:
            assert response.status == 200
    finally:
        await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}/primary"):
            pass


async def test_start_api_with_tls_and_client_certificates(tmp_path: Path) -> None:
    write_ca(tmp_path / "ca")
    server_files = write_node_cert(tmp_path / "ca", tmp_path / "node1", "node1", ["127.0.0.1", "localhost"])
    client_files = write_node_cert(tmp_path / "ca", tmp_path / "ctl", "ctl", ["localhost"])
    settings = make_settings(certfile=server_files.cert, keyfile=server_files.key, cafile=server_files.ca_cert,
                             verify_client="required")
    server = await start_api(FakeBackend(settings=settings))
    try:
        host, port = server.addresses[0]
        url = f"https://{host}:{port}/health"
        trusted = ssl.create_default_context(cafile=str(server_files.ca_cert))
        trusted.load_cert_chain(client_files.cert, client_files.key)
        async with aiohttp.ClientSession() as session, session.get(url, ssl=trusted) as response:
            assert response.status == 200
        anonymous = ssl.create_default_context(cafile=str(server_files.ca_cert))
        with pytest.raises(aiohttp.ClientError):
            async with aiohttp.ClientSession() as session, session.get(url, ssl=anonymous) as response:
                await response.read()
        untrusting = ssl.create_default_context()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with aiohttp.ClientSession() as session, session.get(url, ssl=untrusting):
                pass
    finally:
        await server.stop()
