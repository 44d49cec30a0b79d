"""The tick thread sleeps until Raft has work (replica.DuePoller): try to break it with an idle tick
far longer than the election timeout. Heartbeats must still come in time (no follower campaigns
while the leader is healthy), a frozen leader must still be replaced, and commands must still
commit at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from raftpg.consensus.settings import IDLE_TICK
from tests.raft.conftest import Cluster, freeze, timings_for_tests, wait_until

pytestmark = [pytest.mark.raft, pytest.mark.timeout(60)]

LONG_IDLE_TICK = 2.0  # eight minimum election timeouts (timings_for_tests: 0.25-0.5 s)
QUIET_WINDOW = 3.0  # 60 heartbeat periods, 6 maximum election timeouts


@pytest.fixture
async def slow_ticking(tmp_path: Path) -> AsyncIterator[Cluster]:
    timings = {**timings_for_tests(), IDLE_TICK: LONG_IDLE_TICK}
    assert timings["raftMinTimeout"] * 4 <= LONG_IDLE_TICK
    c = Cluster(tmp_path, 3, timings)
    try:
        for i in range(3):
            await c.start(i)
        await asyncio.gather(*(c.node(i).barrier(timeout=10) for i in range(3)))
        yield c
    finally:
        await c.stop_all()


def terms(c: Cluster) -> set[int]:
    return {c.node(i).raft_status().term for i in c.running()}


async def test_an_idle_leader_heartbeats_in_time_however_long_the_idle_tick(slow_ticking: Cluster) -> None:
    """With pysyncobj's plain poll the leader would send a heartbeat only every LONG_IDLE_TICK and
    the followers would campaign again and again: the term would climb."""
    leader = await slow_ticking.wait_leader()
    before = terms(slow_ticking)
    assert len(before) == 1
    loop = asyncio.get_running_loop()
    quiet_until = loop.time() + QUIET_WINDOW
    while loop.time() < quiet_until:
        assert terms(slow_ticking) == before, "a follower campaigned against a healthy leader"
        assert slow_ticking.leader_index() == leader
        await asyncio.sleep(0.05)


async def test_a_frozen_leader_is_replaced_however_long_the_idle_tick(slow_ticking: Cluster) -> None:
    old = await slow_ticking.wait_leader()
    term = slow_ticking.node(old).raft_status().term
    _, thaw = freeze(slow_ticking.node(old))
    try:
        others = [i for i in slow_ticking.running() if i != old]
        await wait_until(lambda: any(slow_ticking.node(i).raft_status().is_leader for i in others), 10,
                         "a new leader while the old one is frozen")
        new = next(i for i in others if slow_ticking.node(i).raft_status().is_leader)
        assert slow_ticking.node(new).raft_status().term > term
        await slow_ticking.node(new).barrier(timeout=5)
    finally:
        thaw()
    await wait_until(lambda: not slow_ticking.node(old).raft_status().is_leader, 10, "the thawed leader to step down")


async def test_commands_do_not_wait_for_the_idle_tick(slow_ticking: Cluster) -> None:
    """A proposal wakes the tick thread (pysyncobj's wake-up pipe), a follower's forwarded one
    wakes the leader by its message: 20 renewals from a follower commit in well under one idle tick
    each, or the whole run would take 40 s and hit the timeout below."""
    leader = await slow_ticking.wait_leader()
    follower = slow_ticking.node(next(i for i in slow_ticking.running() if i != leader))
    lease = follower.snapshot().lease
    assert await follower.acquire_lease("f", "if", lease.version, lease.revision, 3.0, timeout=3)
    version = follower.snapshot().lease.version

    async def renew_all() -> None:
        for _ in range(20):
            assert await follower.renew_lease("f", "if", version, 3.0, timeout=3)

    await asyncio.wait_for(renew_all(), timeout=LONG_IDLE_TICK * 5)
