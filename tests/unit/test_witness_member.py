"""The witness's publish cycle over a fake Raft replica: the record's shape, publish on change or
when the heartbeat is due (never every cycle), the status the API reads, exit on a dead tick thread."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from raftpg import __version__
from raftpg.api import make_app
from raftpg.cli.witness_backend import WitnessBackend
from raftpg.cli.witness_member import TickThreadDied, WitnessMember, witness_record
from raftpg.clock import boottime
from raftpg.config import Address, DynamicConfig, WitnessSettings
from raftpg.config.model import BootstrapSettings, LogSettings, RaftSettings, RestApiSettings
from raftpg.consensus import ConsensusError, Lease, RaftNode, RaftStatus, Snapshot

pytestmark = pytest.mark.unit

CONFIG = DynamicConfig(ttl=10, loop_wait=2, retry_timeout=4)  # heartbeat: ttl/2 - loop_wait = 3 s


def settings() -> WitnessSettings:
    return WitnessSettings(
        scope="prod", name="witness1",
        raft=RaftSettings(Address("10.0.0.13", 5010), (Address("10.0.0.11", 5010),), Path("/raft"), "x" * 20),
        restapi=RestApiSettings(Address("10.0.0.13", 8008), Address("10.0.0.13", 8008), None, None, None, None,
                                "none"),
        bootstrap=BootstrapSettings(dcs=CONFIG, initdb=()), log=LogSettings(),
    )


@dataclass
class FakeRaft:
    members: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    applied_at: dict[str, float] = field(default_factory=dict)
    published: list[dict[str, Any]] = field(default_factory=list)
    alive: bool = True
    fail: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    config_version: int = 0

    def raft_status(self) -> RaftStatus:
        return RaftStatus(self_addr="10.0.0.13:5010", leader="10.0.0.11:5010", is_leader=False, term=4,
                          commit_index=9, last_applied=9, has_quorum=True, partners={"10.0.0.11:5010": True},
                          tick_thread_alive=self.alive, journal_bytes=100, log_len=9)

    def tick_thread_alive(self) -> bool:
        return self.alive

    def snapshot(self) -> Snapshot:
        lease = Lease(holder="node1", instance_id="i1", version=7, revision=1, ttl=10.0, lsn_at_handover=None,
                      bootstrapping=False, applied_at=boottime())
        return Snapshot(scope="prod", initialize="1", lease=lease, members=dict(self.members),
                        member_applied_at=dict(self.applied_at), config=self.config,
                        config_version=self.config_version, failover=None, failover_dropped=None, sync={},
                        history=(), last_applied=1)

    async def publish_member(self, name: str, record: Mapping[str, Any], *, timeout: float) -> None:
        if self.fail:
            raise ConsensusError("no quorum")
        self.published.append(dict(record))
        self.members[name] = dict(record)
        self.applied_at[name] = boottime()


def witness(raft: FakeRaft) -> WitnessMember:
    return WitnessMember(settings(), cast(RaftNode, raft))


def test_the_record_says_witness_and_where_it_runs() -> None:
    record = witness_record(settings(), "abc")
    assert record["kind"] == "witness" and record["role"] == "witness" and record["state"] == "running"
    assert (record["instance_id"], record["raft_addr"]) == ("abc", "10.0.0.13:5010")
    assert (record["api_url"], record["host"], record["port"]) == ("http://10.0.0.13:8008", "10.0.0.13", None)
    assert record["tags"]["nofailover"] and record["tags"]["nosync"] and record["tags"]["noloadbalance"]
    assert record["version"] == __version__


async def test_publishes_at_first_then_only_when_the_heartbeat_is_due() -> None:
    raft = FakeRaft()
    member = witness(raft)
    assert member.status().state == "starting"
    await member.cycle(CONFIG)
    assert len(raft.published) == 1 and raft.published[0]["instance_id"] == member.instance_id
    await member.cycle(CONFIG)
    assert len(raft.published) == 1  # unchanged and applied just now: no commit
    raft.applied_at["witness1"] -= 3.0  # the copy in Raft is a heartbeat interval old
    await member.cycle(CONFIG)
    assert len(raft.published) == 2


async def test_a_changed_record_is_published_at_once() -> None:
    raft = FakeRaft()
    member = witness(raft)
    await member.cycle(CONFIG)
    raft.members["witness1"] = {**raft.members["witness1"], "instance_id": "an earlier process"}
    await member.cycle(CONFIG)
    assert len(raft.published) == 2


async def test_status_follows_the_cluster_state() -> None:
    raft = FakeRaft(config={**CONFIG.to_dict(), "pause": True}, config_version=3)
    member = witness(raft)
    await member.cycle(member.config())
    status = member.status()
    assert (status.role, status.state, status.pg_running) == ("witness", "running", False)
    assert (status.lease_holder, status.lease_version, status.paused) == ("node1", 7, True)
    assert status.updated_at > 0 and "witness" in status.last_decision


async def test_a_failed_publish_is_reported_in_the_status_and_retried() -> None:
    raft = FakeRaft(fail=True)
    member = witness(raft)
    await member.cycle(CONFIG)
    assert "could not publish" in member.status().last_decision
    raft.fail = False
    await member.cycle(CONFIG)
    assert len(raft.published) == 1 and "could not" not in member.status().last_decision


async def test_a_dead_tick_thread_ends_the_witness() -> None:
    member = witness(FakeRaft(alive=False))
    with pytest.raises(TickThreadDied):
        await member.run()


def test_config_in_force_is_the_one_in_raft_else_the_bootstrap_one() -> None:
    raft = FakeRaft()
    member = witness(raft)
    assert member.config() == CONFIG
    raft.config, raft.config_version = replace(CONFIG, ttl=20).to_dict(), 1
    assert member.config().ttl == 20


async def test_the_rest_api_of_a_witness() -> None:
    raft = FakeRaft()
    member = witness(raft)
    await member.cycle(CONFIG)
    backend = WitnessBackend(settings(), cast(RaftNode, raft), member)
    async with TestClient(TestServer(make_app(backend))) as client:
        patroni = await (await client.get("/patroni")).json()
        assert (patroni["role"], patroni["state"]) == ("witness", "running")
        assert patroni["raftpg"]["raft"]["term"] == 4 and patroni["raftpg"]["lease_holder"] == "node1"
        assert (await client.get("/health")).status == 200
        for path in ("/primary", "/replica", "/read-only", "/leader"):
            assert (await client.get(path)).status == 503, path
        cluster = await (await client.get("/cluster")).json()
        assert [m["role"] for m in cluster["members"] if m["name"] == "witness1"] == ["witness"]
        for path in ("/restart", "/reload", "/reinitialize"):
            response = await client.post(path, json={})
            assert response.status == 503 and "witness" in (await response.json())["error"], path
        assert (await client.delete("/restart")).status == 404
        metrics = await (await client.get("/metrics")).text()
        assert 'raftpg_witness{scope="prod",name="witness1"} 1' in metrics
        assert 'raftpg_raft_has_quorum{scope="prod",name="witness1"} 1' in metrics
        assert "raftpg_postgres_running" not in metrics
