"""RaftNode on real pysyncobj replicas over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import pickle as sync_pickle

from raftpg.clock import boottime
from raftpg.consensus import ConsensusError, NoQuorum, OutcomeUnknown, RaftNode, Snapshot
from tests.raft.conftest import PASSWORD, SCOPE, Cluster, free_port, timings_for_tests, wait_until

pytestmark = [pytest.mark.raft, pytest.mark.timeout(60)]

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "journal_v1"
CMD_TIMEOUT = 3.0


def facts(snap: Snapshot) -> dict[str, Any]:
    """The replicated part of a snapshot (local applied-at times and log position left out)."""
    lease = snap.lease
    return {
        "scope": snap.scope,
        "initialize": snap.initialize,
        "lease": {
            "holder": lease.holder,
            "instance_id": lease.instance_id,
            "version": lease.version,
            "revision": lease.revision,
            "ttl": lease.ttl,
            "lsn_at_handover": lease.lsn_at_handover,
            "bootstrapping": lease.bootstrapping,
        },
        "members": dict(snap.members),
        "config": dict(snap.config),
        "config_version": snap.config_version,
        "failover": snap.failover,
        "sync": dict(snap.sync),
        "history": list(snap.history),
    }


# ------------------------------------------------------------------ replication and leases


async def test_acquire_is_seen_by_all_with_local_expiry(cluster: Cluster) -> None:
    before = boottime()
    assert await cluster.node(0).acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)

    def everyone_sees_a() -> bool:
        return all(cluster.node(i).snapshot().lease.holder == "a" for i in range(3))

    await wait_until(everyone_sees_a, 5, "lease replicated to all")
    for i in range(3):
        lease = cluster.node(i).snapshot().lease
        assert (lease.instance_id, lease.version, lease.revision, lease.ttl) == ("ia", 1, 1, 3.0)
        assert before <= lease.applied_at <= boottime()
        assert lease.expires_at() == lease.applied_at + 3.0
        assert not lease.expired(lease.applied_at + 2.9)
        assert lease.expired(lease.applied_at + 3.0)


async def test_renewal_commits_and_makes_a_stale_acquire_fail(cluster: Cluster) -> None:
    a, b = cluster.node(0), cluster.node(1)
    assert await a.acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)
    await wait_until(lambda: b.snapshot().lease.holder == "a", 5, "b to see the lease")
    seen = b.snapshot().lease
    applied_before = seen.applied_at
    assert await a.renew_lease("a", "ia", 1, 3.0, timeout=CMD_TIMEOUT)
    assert not await b.acquire_lease("b", "ib", seen.version, seen.revision, 3.0, timeout=CMD_TIMEOUT)
    await wait_until(lambda: b.snapshot().lease.revision == 2, 5, "b to apply the renewal")
    lease = b.snapshot().lease
    assert lease.holder == "a" and lease.applied_at > applied_before
    assert not await a.renew_lease("a", "other-instance", 1, 3.0, timeout=CMD_TIMEOUT)


async def test_every_operation_round_trips(cluster: Cluster) -> None:
    n = cluster.node(2)  # a follower or the leader: both must work
    assert await n.ensure_cluster(timeout=CMD_TIMEOUT)
    assert await n.acquire_lease("a", "ia", 0, 0, 3.0, bootstrapping=True, timeout=CMD_TIMEOUT)
    assert await n.renew_lease("a", "ia", 1, 3.0, bootstrapping=False, timeout=CMD_TIMEOUT)
    assert await n.initialize("a", "ia", 1, "7350000000000000001", timeout=CMD_TIMEOUT)
    await n.publish_member("a", {"instance_id": "ia", "role": "primary"}, timeout=CMD_TIMEOUT)
    await n.publish_member("b", {"instance_id": "ib", "role": "replica"}, timeout=CMD_TIMEOUT)
    await n.remove_member("b", timeout=CMD_TIMEOUT)
    assert await n.set_config({"ttl": 3, "loop_wait": 1}, 0, timeout=CMD_TIMEOUT)
    assert not await n.set_config({"ttl": 9}, 0, timeout=CMD_TIMEOUT)
    assert await n.set_sync("a", "ia", 1, {"members": ["b"]}, timeout=CMD_TIMEOUT)
    assert await n.append_history("a", "ia", 1, {"request_id": "h1", "timeline": 1}, timeout=CMD_TIMEOUT)
    assert await n.append_history("a", "ia", 1, {"request_id": "h1", "timeline": 1}, timeout=CMD_TIMEOUT)
    assert await n.set_failover({"request_id": "f1", "candidate": "b"}, timeout=CMD_TIMEOUT)
    assert not await n.clear_failover("f0", timeout=CMD_TIMEOUT)
    assert await n.clear_failover("f1", timeout=CMD_TIMEOUT)
    assert await n.handover_lease("a", "ia", 1, "b", "ib", 50331744, timeout=CMD_TIMEOUT)
    assert await n.set_operation("rolling_restart", {"phase": "replicas"}, 0, timeout=CMD_TIMEOUT)
    assert not await n.set_operation("rolling_restart", {"phase": "stale"}, 0, timeout=CMD_TIMEOUT)

    snap = n.snapshot()
    assert snap.scope == SCOPE and snap.initialize == "7350000000000000001"
    assert (snap.lease.holder, snap.lease.version, snap.lease.lsn_at_handover) == ("b", 2, 50331744)
    assert not snap.lease.bootstrapping
    assert dict(snap.members) == {"a": {"instance_id": "ia", "role": "primary"}}
    assert set(snap.member_applied_at) == {"a"}
    assert (dict(snap.config), snap.config_version) == ({"ttl": 3, "loop_wait": 1}, 1)
    assert dict(snap.sync) == {"leader": "b", "members": ["a", "b"], "quorum": 2}  # both hold every commit
    assert [h["request_id"] for h in snap.history] == ["h1"]
    assert snap.failover is None
    assert dict(snap.operations) == {"rolling_restart": {"revision": 1, "record": {"phase": "replicas"}}}
    with pytest.raises(ValueError, match="plain JSON"):
        await n.publish_member("c", {"when": object()}, timeout=CMD_TIMEOUT)


async def test_snapshot_is_a_copy_the_caller_cannot_corrupt(cluster: Cluster) -> None:
    n = cluster.node(0)
    await n.publish_member("a", {"instance_id": "ia", "tags": {"x": 1}}, timeout=CMD_TIMEOUT)
    snap = n.snapshot()
    snap.members["a"]["tags"]["x"] = 2
    assert n.snapshot().members["a"]["tags"]["x"] == 1


async def test_on_change_runs_on_the_event_loop(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[int, str | None]] = []
    node: RaftNode | None = None

    def on_change() -> None:
        assert node is not None
        seen.append((threading.get_ident(), node.snapshot().lease.holder))

    node = RaftNode(scope=SCOPE, self_addr=f"127.0.0.1:{free_port()}", partner_addrs=[],
                    data_dir=tmp_path / "solo", password=PASSWORD, timings=timings_for_tests(),
                    on_change=on_change)
    await node.start()
    try:
        await node.barrier(timeout=5)
        assert seen == []  # a no-op changes nothing
        assert await node.acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)
        await wait_until(lambda: any(holder == "a" for _, holder in seen), 5, "on_change")
        assert {thread for thread, _ in seen} == {loop_thread}
    finally:
        await node.stop()


async def test_barrier_and_no_quorum_on_an_isolated_node(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3)
    try:
        lonely = await c.start(0)
        started = time.monotonic()
        with pytest.raises(NoQuorum):
            await lonely.barrier(timeout=1.0)
        with pytest.raises(NoQuorum):
            await lonely.acquire_lease("a", "ia", 0, 0, 3.0, timeout=0.5)
        assert time.monotonic() - started < 3.0
        await c.start(1)
        await lonely.barrier(timeout=10)
        status = lonely.raft_status()
        assert status.last_applied >= status.commit_index - 1 and status.has_quorum
    finally:
        await c.stop_all()


# ------------------------------------------------------------------ failures and restarts


async def test_raft_leader_stops_others_elect_and_it_catches_up_on_restart(cluster: Cluster) -> None:
    old = await cluster.wait_leader()
    term = cluster.node(old).raft_status().term
    await cluster.stop(old)
    survivor = cluster.running()[0]
    new = await cluster.wait_leader(timeout=5)
    assert new != old and cluster.node(new).raft_status().term > term
    assert await cluster.node(survivor).acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)
    await cluster.node(survivor).publish_member("a", {"instance_id": "ia"}, timeout=CMD_TIMEOUT)

    restarted = await cluster.start(old)
    await restarted.barrier(timeout=10)
    snap = restarted.snapshot()
    assert snap.lease.holder == "a" and "a" in snap.members


async def test_renewal_in_flight_when_the_leader_dies_commits_through_the_next_one(cluster: Cluster) -> None:
    """A lost entry is proposed again to the new leader, not waited on until the timeout: a
    rolling restart that takes two Raft leaders down in a row must not cost the primary its lease."""
    assert await cluster.node(0).acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)
    revision = cluster.node(0).snapshot().lease.revision
    for round_ in range(2):
        leader = await cluster.wait_leader()
        n = cluster.node(next(i for i in cluster.running() if i != leader))
        in_flight = [asyncio.create_task(n.renew_lease("a", "ia", 1, 3.0, timeout=30.0)) for _ in range(5)]
        await cluster.stop(leader)
        assert all(await asyncio.gather(*in_flight)), f"round {round_}"
        revision += 5
        assert n.snapshot().lease.revision >= revision
        await cluster.start(leader)
        await cluster.node(leader).barrier(timeout=10)


async def test_cold_restart_of_all_replicas_keeps_state(cluster: Cluster) -> None:
    n = cluster.node(0)
    assert await n.acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)
    for i in range(20):
        assert await n.renew_lease("a", "ia", 1, 3.0, timeout=CMD_TIMEOUT)
        await n.publish_member("a", {"instance_id": "ia", "lsn": i}, timeout=CMD_TIMEOUT)
    assert await n.append_history("a", "ia", 1, {"request_id": "h1"}, timeout=CMD_TIMEOUT)
    await n.barrier(timeout=5)
    expected = facts(n.snapshot())
    await wait_until(lambda: all(facts(cluster.node(i).snapshot()) == expected for i in range(3)), 5,
                     "all replicas applied everything")
    await cluster.stop_all()

    restarted_at = boottime()
    for i in range(3):
        await cluster.start(i)
    for i in range(3):
        await cluster.node(i).barrier(timeout=10)
    for i in range(3):
        snap = cluster.node(i).snapshot()
        assert facts(snap) == expected
        # Conservative after a restart: every lease and member age restarts from now.
        assert snap.lease.applied_at >= restarted_at
        assert all(at >= restarted_at for at in snap.member_applied_at.values())
    assert await cluster.node(1).renew_lease("a", "ia", 1, 3.0, timeout=CMD_TIMEOUT)


async def test_wiped_replicas_rejoining_wait_for_the_one_with_the_log(cluster: Cluster) -> None:
    """Two wiped replicas are a majority: if they stood for election they would elect an empty
    log and Raft would overwrite the survivor's state. Joining, they hold back until it is up."""
    assert await cluster.node(0).acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)
    assert await cluster.node(0).append_history("a", "ia", 1, {"request_id": "kept"}, timeout=CMD_TIMEOUT)
    await wait_until(lambda: all(cluster.node(i).snapshot().lease.holder == "a" for i in range(3)), 5,
                     "every replica to apply the lease")
    await cluster.stop_all()
    for i in (1, 2):
        for path in cluster.data_dir(i).iterdir():
            path.unlink()

    joiners = [await cluster.start(i, joining=True) for i in (1, 2)]
    hold_back_until = time.monotonic() + 2.0  # 4-8 election timeouts of these timings
    while time.monotonic() < hold_back_until:
        assert all(j.raft_status().term == 0 and not j.raft_status().is_leader for j in joiners)
        await asyncio.sleep(0.05)

    await cluster.start(0)
    assert await cluster.wait_leader() == 0
    for joiner in joiners:
        await joiner.barrier(timeout=10)
        snap = joiner.snapshot()
        assert snap.lease.holder == "a" and [h["request_id"] for h in snap.history] == ["kept"]
        joiner.finish_joining()
    await cluster.stop(0)
    new = await cluster.wait_leader(timeout=10)
    assert new in (1, 2)
    assert await cluster.node(new).renew_lease("a", "ia", 1, 3.0, timeout=CMD_TIMEOUT)


async def test_command_on_a_leader_that_lost_its_followers_is_outcome_unknown(cluster: Cluster) -> None:
    """The entry is appended but cannot commit; after the timeout the replica cannot tell."""
    leader = await cluster.wait_leader()
    n = cluster.node(leader)
    assert await n.acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)
    for i in cluster.running():
        if i != leader:
            await cluster.stop(i)
    assert n.raft_status().is_leader  # it notices only after leaderFallbackTimeout (1 s)
    with pytest.raises(OutcomeUnknown):
        await n.renew_lease("a", "ia", 1, 3.0, timeout=0.3)
    assert n.snapshot().lease.revision == 1


async def test_bind_failure_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        node = RaftNode(scope=SCOPE, self_addr=addr, partner_addrs=[], data_dir=tmp_path / "n",
                        password=PASSWORD, timings=timings_for_tests())
        with pytest.raises(ConsensusError, match="cannot bind Raft address"):
            await node.start()
        assert not node.tick_thread_alive()


def test_constructor_refuses_missing_password_and_bad_timings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="password is mandatory"):
        RaftNode(scope=SCOPE, self_addr="127.0.0.1:1", partner_addrs=[], data_dir=tmp_path,
                 password="", timings=timings_for_tests())
    bad = {**timings_for_tests(), "raftMinTimeout": 0.1}
    with pytest.raises(ValueError, match="raftMinTimeout must exceed"):
        RaftNode(scope=SCOPE, self_addr="127.0.0.1:1", partner_addrs=[], data_dir=tmp_path,
                 password=PASSWORD, timings=bad)


# ------------------------------------------------------------------ security


@pytest.mark.parametrize(
    ("password", "scope", "configured"),
    [
        ("another password", SCOPE, False),
        (PASSWORD, "other-scope", False),
        ("another password", SCOPE, True),
    ],
    ids=["stranger-wrong-password", "stranger-other-scope", "configured-member-wrong-password"],
)
async def test_wrong_password_or_scope_cannot_join_or_disturb(
    tmp_path: Path, password: str, scope: str, configured: bool
) -> None:
    c = Cluster(tmp_path, 4)
    # 127.0.0.2 sorts after 127.0.0.1: pysyncobj dials only peers with a smaller address, so the
    # intruder actively connects to every member.
    c.addrs[3] = f"127.0.0.2:{free_port('127.0.0.2')}"
    members = c.addrs if configured else c.addrs[:3]
    try:
        for i in range(3):
            await c.start(i, partners=members)
        for i in range(3):
            await c.node(i).barrier(timeout=10)
        assert await c.node(0).acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)
        leader = await c.wait_leader()
        term = c.node(leader).raft_status().term
        before = facts(c.node(0).snapshot())

        intruder = await c.start(3, password=password, scope=scope, partners=c.addrs)
        with pytest.raises(NoQuorum):
            await intruder.publish_member("evil", {"instance_id": "x"}, timeout=1.0)
        with pytest.raises(NoQuorum):
            await intruder.barrier(timeout=1.0)
        status = intruder.raft_status()
        assert status.leader is None and status.term == 0 and not any(status.partners.values())
        assert intruder.snapshot().lease.holder is None

        assert c.leader_index() == leader and c.node(leader).raft_status().term == term
        assert not any(c.node(i).raft_status().partners.get(c.addrs[3], False) for i in range(3))
        assert facts(c.node(1).snapshot()) == before
        assert await c.node(1).renew_lease("a", "ia", 1, 3.0, timeout=CMD_TIMEOUT)
    finally:
        await c.stop_all()


def _frame(payload: bytes) -> bytes:
    return struct.pack("i", len(payload)) + payload


async def test_garbage_on_the_raft_port_changes_nothing(cluster: Cluster) -> None:
    assert await cluster.node(0).acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)
    leader = await cluster.wait_leader()
    target = cluster.node(leader)
    term = target.raft_status().term
    members_before = set(target.raft_status().partners)
    before = facts(target.snapshot())

    host, port = cluster.addrs[leader].rsplit(":", 1)
    junk = [
        os.urandom(4096),
        _frame(os.urandom(300)),
        # An unencrypted membership change, as a passwordless pysyncobj client would send it.
        _frame(zlib.compress(sync_pickle.dumps(["add", "127.0.0.1:1"]))),
        _frame(zlib.compress(sync_pickle.dumps({"type": "request_vote", "term": 10**6}))),
    ]

    def send(payload: bytes) -> bytes:
        with socket.create_connection((host, int(port)), timeout=3) as s:
            s.sendall(payload)
            s.settimeout(3)
            try:
                return s.recv(100)
            except TimeoutError:
                return b"<open>"

    replies = [await asyncio.to_thread(send, payload) for payload in junk]
    # Every well-framed message that is not a valid Fernet token makes the node hang up at once.
    assert replies[1:] == [b"", b"", b""]

    status = target.raft_status()
    assert status.term == term and status.is_leader
    assert set(status.partners) == members_before
    assert facts(target.snapshot()) == before
    assert await cluster.node(1).renew_lease("a", "ia", 1, 3.0, timeout=CMD_TIMEOUT)


async def test_raft_files_are_private(cluster: Cluster) -> None:
    n = cluster.node(0)
    await n.publish_member("a", {"instance_id": "ia"}, timeout=CMD_TIMEOUT)
    n.request_compaction()
    data_dir = cluster.data_dir(0)
    await wait_until(lambda: (data_dir / "raft.dump").exists(), 5, "a full dump")
    await cluster.stop(0)
    assert (data_dir.stat().st_mode & 0o777) == 0o700
    for name in ("raft.journal", "raft.journal.meta", "raft.dump"):
        assert ((data_dir / name).stat().st_mode & 0o777) == 0o600, name


# ------------------------------------------------------------------ journal compatibility


async def write_journal(data_dir: Path, addr: str) -> dict[str, Any]:
    """Every operation this release writes, half before a compaction (into the full dump), half
    after (journal entries only). Returns the state the files must reproduce."""
    node = RaftNode(scope=SCOPE, self_addr=addr, partner_addrs=[], data_dir=data_dir,
                    password=PASSWORD, timings=timings_for_tests())
    await node.start()
    try:
        await node.barrier(timeout=5)
        assert await node.ensure_cluster(timeout=CMD_TIMEOUT)
        assert await node.acquire_lease("pg1", "i1", 0, 0, 3.0, bootstrapping=True, timeout=CMD_TIMEOUT)
        assert await node.renew_lease("pg1", "i1", 1, 3.0, timeout=CMD_TIMEOUT)
        assert await node.initialize("pg1", "i1", 1, "7350000000000000001", timeout=CMD_TIMEOUT)
        await node.publish_member("pg1", {"instance_id": "i1", "role": "primary", "lsn": 100},
                                  timeout=CMD_TIMEOUT)
        await node.publish_member("pg3", {"instance_id": "i3", "role": "replica"}, timeout=CMD_TIMEOUT)
        assert await node.set_config({"ttl": 30, "postgresql": {"parameters": {"max_connections": 100}}},
                                     0, timeout=CMD_TIMEOUT)
        assert await node.append_history("pg1", "i1", 1, {"request_id": "h1", "timeline": 1},
                                         timeout=CMD_TIMEOUT)
        journal_before = node.raft_status().journal_bytes
        node.request_compaction()
        await wait_until(lambda: (data_dir / "raft.dump").exists(), 5, "the full dump")
        await wait_until(lambda: node.raft_status().journal_bytes < journal_before, 5, "journal truncation")

        await node.publish_member("pg2", {"instance_id": "i2", "role": "replica", "lsn": 90},
                                  timeout=CMD_TIMEOUT)
        await node.remove_member("pg3", timeout=CMD_TIMEOUT)
        assert await node.set_sync("pg1", "i1", 1, {"members": ["pg2"]}, timeout=CMD_TIMEOUT)
        assert await node.set_failover({"request_id": "f1", "leader": "pg1", "candidate": "pg2"},
                                       timeout=CMD_TIMEOUT)
        assert await node.clear_failover("f1", timeout=CMD_TIMEOUT)
        assert await node.set_failover({"request_id": "f2", "leader": "pg1", "candidate": "pg2",
                                        "scheduled_at": "2030-01-01T00:00:00+00:00"}, timeout=CMD_TIMEOUT)
        assert await node.append_history("pg1", "i1", 1, {"request_id": "h2", "timeline": 2},
                                         timeout=CMD_TIMEOUT)
        assert await node.handover_lease("pg1", "i1", 1, "pg2", "i2", 50331744, timeout=CMD_TIMEOUT)
        assert await node.set_config({"ttl": 20}, None, timeout=CMD_TIMEOUT)
        last = node.raft_status().last_applied
        expected = facts(node.snapshot())
    finally:
        await node.stop()
    # A replica stopped on purpose stores its commit index (durable.py): a restart replays it all.
    assert sync_pickle.loads((data_dir / "raft.journal.meta").read_bytes()).get("raftCommitIndex", 0) >= last
    return expected


async def replay(data_dir: Path, expected: dict[str, Any], addr: str) -> RaftNode:
    node = RaftNode(scope=SCOPE, self_addr=addr, partner_addrs=[], data_dir=data_dir,
                    password=PASSWORD, timings=timings_for_tests())
    started = boottime()
    await node.start()
    try:
        await wait_until(lambda: facts(node.snapshot()) == expected, 10, "journal replay")
        snap = node.snapshot()
        assert snap.lease.applied_at >= started
        assert set(snap.member_applied_at) == set(expected["members"])
        return node
    except BaseException:
        await node.stop()
        raise


async def test_replay_of_journal_and_dump_written_by_this_release(tmp_path: Path) -> None:
    addr = f"127.0.0.1:{free_port()}"
    expected = await write_journal(tmp_path / "raft", addr)
    assert expected["lease"]["holder"] == "pg2" and expected["failover"]["request_id"] == "f2"
    node = await replay(tmp_path / "raft", expected, addr)
    try:
        await node.barrier(timeout=5)  # same address: the replica is fully usable again
        assert await node.renew_lease("pg2", "i2", 2, 3.0, timeout=CMD_TIMEOUT)
    finally:
        await node.stop()


async def test_replay_of_the_committed_v1_fixture(tmp_path: Path) -> None:
    """A future release must still read the files this release wrote (tests/raft/fixtures)."""
    data_dir = tmp_path / "raft"
    shutil.copytree(FIXTURE_V1 / "raft", data_dir)
    expected = json.loads((FIXTURE_V1 / "expected_state.json").read_text())
    # A new address: the recorded one becomes a phantom peer, so only local replay can do this.
    node = await replay(data_dir, expected, f"127.0.0.1:{free_port()}")
    await node.stop()


@pytest.mark.skipif(not os.environ.get("RAFTPG_REGENERATE_FIXTURES"), reason="set RAFTPG_REGENERATE_FIXTURES=1")
async def test_regenerate_the_v1_fixture(tmp_path: Path) -> None:
    """Run once per on-disk format: RAFTPG_REGENERATE_FIXTURES=1 pytest -k regenerate."""
    expected = await write_journal(tmp_path / "raft", f"127.0.0.1:{free_port()}")
    shutil.rmtree(FIXTURE_V1, ignore_errors=True)
    (FIXTURE_V1 / "raft").mkdir(parents=True)
    for name in ("raft.journal", "raft.journal.meta", "raft.dump"):
        shutil.copy(tmp_path / "raft" / name, FIXTURE_V1 / "raft" / name)
    (FIXTURE_V1 / "expected_state.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")


async def test_removing_the_raft_leader_right_after_it_died(cluster: Cluster) -> None:
    """The operator's `ctl members remove` of a dead member that was the Raft leader: proposals
    made while the survivors elect a new leader (missing leader, leader changed, discarded) are
    proposed again until one commits; the two survivors then form the whole cluster."""
    old = await cluster.wait_leader()
    await cluster.stop(old)
    survivor = cluster.running()[0]
    await cluster.node(survivor).remove_member_addr(cluster.addrs[old], timeout=15.0)
    for i in cluster.running():
        await wait_until(lambda i=i: cluster.addrs[old] not in cluster.node(i).raft_status().partners, 5.0,
                         f"node {i} to drop the removed member")
    assert await cluster.node(survivor).acquire_lease("a", "ia", 0, 0, 3.0, timeout=CMD_TIMEOUT)


# ------------------------------------------------------------------ leadership follows the lease


async def test_raft_leadership_follows_the_lease_holder(cluster: Cluster) -> None:
    """The holder's renewals then commit without a forwarding hop; a switchover moves both."""
    leader = await cluster.wait_leader()
    follower = next(i for i in cluster.running() if i != leader)
    for holder in (follower, leader):
        n = cluster.node(holder)
        name = f"m{holder}"
        await n.publish_member(name, {"instance_id": name, "raft_addr": cluster.addrs[holder]}, timeout=CMD_TIMEOUT)
        lease = n.snapshot().lease
        if lease.holder is None:
            assert await n.acquire_lease(name, name, lease.version, lease.revision, 3.0, timeout=CMD_TIMEOUT)
        else:
            assert await n.handover_lease(lease.holder, lease.instance_id or "", lease.version, name, name, 1,
                                          timeout=CMD_TIMEOUT)
        await wait_until(lambda: cluster.leader_index() == holder, 10,  # noqa: B023 (awaited at once)
                         f"Raft leadership to follow to {name}")


async def test_a_stopping_raft_leader_hands_leadership_on(cluster: Cluster,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    leader = await cluster.wait_leader()
    with caplog.at_level("INFO", logger="raftpg.consensus.node"):
        await cluster.stop(leader)
    handed = [r.getMessage() for r in caplog.records if "handed to" in r.getMessage()]
    assert handed, [r.getMessage() for r in caplog.records]
    new = await cluster.wait_leader()
    assert cluster.addrs[new] in handed[0]
