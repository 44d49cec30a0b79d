"""The shell's order of operations, with the real core and fakes of PostgreSQL, Raft, the lease
and the peers: fence before promote, stop-and-report before both, the switchover sequence
(rule 4), and a failed hand-over at shutdown ending in stop-and-release."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from raftpg.ha import actions as A
from raftpg.ha.core import step
from raftpg.ha.executor import Executor
from raftpg.ha.memory import Memory, PgState
from raftpg.ha.observations import Observation
from raftpg.ha.sync import BLOCKING_NAME
from raftpg.ha.views import PgRole
from raftpg.postgres.controldata import ClusterState
from raftpg.postgres.instance import Started
from tests.unit.api_fakes import make_settings
from tests.unit.ha_views import NOW, cluster, lease, local, member

pytestmark = pytest.mark.unit


@dataclass
class World:
    """Every fake appends what it was asked to do to one log, so the test reads the order."""

    log: list[str] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # member -> its /patroni document
    cluster_state: ClusterState = ClusterState.SHUT_DOWN
    postmaster: int | None = 4242
    started: Started = Started.READY  # how PostgresInstance.start ends

    # PostgresInstance
    def postmaster_pid(self) -> int | None:
        return self.postmaster

    async def reload(self, parameters: dict[str, str], timeout: float, **_: Any) -> None:
        self.log.append(f"reload {parameters.get('synchronous_standby_names', '')!r}")

    async def promote(self, timeout: float) -> None:
        self.log.append("promote")

    async def stop(self, mode: str, timeout: float) -> None:
        self.log.append(f"stop {mode}")
        self.postmaster = None

    async def start(self, *, standby: bool, upstream: Any, ready_within: float | None = None, **_: Any) -> Started:
        self.log.append(f"start {'standby' if standby else 'primary'} of {upstream.port} within {ready_within}")
        self.postmaster = 4343
        return self.started

    async def controldata(self, timeout: float) -> Any:
        self.log.append("controldata")
        return SimpleNamespace(cluster_state=self.cluster_state, checkpoint_lsn=500)

    # LeaseKeeper
    instance_id = "i-node1"

    def held(self) -> bool:
        return True

    async def arm_fence(self, pid: int) -> None:
        self.log.append(f"arm fence {pid}")

    async def disarm_fence(self) -> None:
        self.log.append("disarm fence")

    async def release(self, timeout: float) -> bool:
        self.log.append("release lease")
        return True

    def forget(self) -> None:
        self.log.append("forget lease")

    @contextlib.asynccontextmanager
    async def kept_alive(self, interval: float, timeout: float) -> AsyncIterator[None]:
        yield

    # RaftNode
    def snapshot(self) -> Any:
        return SimpleNamespace(lease=SimpleNamespace(version=9))

    async def append_history(self, *args: Any, timeout: float) -> None:
        self.log.append("history")

    async def handover_lease(self, *args: Any, timeout: float) -> bool:
        self.log.append(f"hand over to {args[3]} at {args[5]}")
        return True

    async def clear_failover(self, request_id: str, timeout: float, reason: str | None = None) -> bool:
        self.log.append(f"clear failover {request_id}")
        return True

    # MemberClient
    async def get_json(self, name: str, url: str, timeout: float) -> Any:
        return self.answers.get(name)


def shell(world: World) -> tuple[Executor, list[Memory]]:
    memory = [Memory(state=PgState.RUNNING, upstream="node2")]

    def report(observation: Observation) -> list[A.Action]:
        memory[0], actions = step(memory[0], observation, NOW)
        return actions

    executor = Executor(make_settings(), world, world, world, world, lambda: memory[0], report)  # type: ignore[arg-type]
    return executor, memory


def replica(lsn: int, upstream: str | None) -> dict[str, Any]:
    return {"role": "replica", "state": "running", "xlog": {"received_location": lsn}, "raftpg": {"upstream": upstream}}


WON = cluster(lease("node1", "i-node1", version=9), members=[member("node1"), member("node2", role="primary"),
                                                             member("node3")], synchronous_mode="on")
PROMOTE = A.Promote("lease acquired: promoting", witnesses=frozenset({"node3"}), reports_needed=1)


async def test_witness_reports_then_fence_then_promote() -> None:
    world = World(answers={"node3": replica(150, upstream=None)})  # it stopped streaming from the old primary
    executor, memory = shell(world)
    result = await executor.carry_out(PROMOTE, local("node1", lsn=200), WON)
    assert result.succeeded
    blocking = f'FIRST 1 ("{BLOCKING_NAME}")'
    assert world.log == ["arm fence 4242", f"reload {blocking!r}", "promote", f"reload {blocking!r}", "history"]
    assert memory[0].upstream is None and memory[0].sync_names == blocking


async def test_a_witness_still_streaming_from_the_old_primary_gives_the_lease_back() -> None:
    world = World(answers={"node3": replica(150, upstream="node2")})
    executor, _ = shell(world)
    cluster_ = cluster(lease("node1", "i-node1"), members=list(WON.members.values()), retry_timeout=0.2)
    result = await executor.carry_out(PROMOTE, local("node1", lsn=200), cluster_)
    assert not result.succeeded
    assert world.log == ["release lease"]  # neither fenced nor promoted


async def test_switchover_stops_checks_waits_then_hands_over() -> None:
    world = World(answers={"node2": replica(600, upstream="node1")})
    executor, memory = shell(world)
    holder_cluster = cluster(lease("node1", "i-node1"))
    result = await executor.carry_out(A.Switchover("requested", "node2", "r1"), local("node1", role=PgRole.PRIMARY),
                                      holder_cluster)
    assert result.succeeded
    assert world.log == ["stop fast", "controldata", "hand over to node2 at 500", "forget lease", "disarm fence",
                         "clear failover r1"]
    assert memory[0].state is PgState.STOPPED and memory[0].upstream is None


async def test_unclean_stop_at_shutdown_aborts_then_stops_and_releases() -> None:
    world = World(cluster_state=ClusterState.IN_PRODUCTION)
    executor, _ = shell(world)
    holder_cluster = cluster(lease("node1", "i-node1"))
    await executor.shutdown([A.Switchover("shutting down", "node2", "shutdown")], holder_cluster, timeout=5)
    assert world.log == ["stop fast", "controldata", "clear failover shutdown", "disarm fence", "release lease",
                         "disarm fence"]


async def test_a_standby_start_that_ends_recovering_is_remembered_as_such() -> None:
    """The wait the core asked for goes to pg_ctl; a standby left recovering is 'starting', not running."""
    world = World(postmaster=None, started=Started.RECOVERING)
    executor, memory = shell(world)
    follower = cluster(lease("node2", "i-node2"), members=list(WON.members.values()), retry_timeout=1.5)
    result = await executor.carry_out(A.StartStandby("rejoining", "node2", 1.5), local("node1", role=PgRole.STOPPED),
                                      follower)
    assert result.succeeded and world.log == ["start standby of 5432 within 1.5"]
    assert memory[0].standby_recovering and memory[0].state is PgState.STARTING and memory[0].upstream == "node2"
    world.started = Started.READY
    answer = await executor.serve("restart", [A.RestartPostgres("restart requested", primary=False, upstream="node2")],
                                  local("node1"), follower)
    assert answer == "restart done"
    assert world.log[1:] == ["stop fast", "start standby of 5432 within 1.5"]  # an operator's restart: retry_timeout
    assert not memory[0].standby_recovering and memory[0].state is PgState.RUNNING
