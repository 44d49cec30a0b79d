"""HaLoop cycles with the real core, executor and lease keeper over fakes of Raft, PostgreSQL and
the fence: a crashed primary is restarted in place (started locked, fenced, then opened), and the
loop's memory and published status follow PostgreSQL through the cycles."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest

from raftpg.clock import boottime
from raftpg.consensus.model import Lease, Snapshot
from raftpg.ha.loop import HaLoop
from raftpg.ha.memory import PgState
from raftpg.postgres.controldata import ClusterState
from raftpg.postgres.datadir import DataDirState
from raftpg.postgres.status import PgStatus
from tests.unit.api_fakes import make_settings

pytestmark = pytest.mark.unit

SYSID = 7000000000000000001


@dataclass
class World:
    """Raft, PostgreSQL and the fence of node1, each call noted in one log."""

    log: list[str] = field(default_factory=list)
    instance: str = ""
    running: bool = False
    published: list[dict[str, Any]] = field(default_factory=list)
    fence_armed: bool = False

    # RaftNode
    def snapshot(self) -> Snapshot:
        lease = Lease("node1", self.instance, 3, 40, 10.0, None, False, applied_at=boottime())
        record = self.published[-1] if self.published else {"role": "unknown"}
        return Snapshot(scope="demo", initialize=str(SYSID), lease=lease, members=MappingProxyType({"node1": record}),
                        member_applied_at=MappingProxyType({"node1": boottime()}), config=MappingProxyType({}),
                        config_version=1, failover=None, failover_dropped=None, sync=MappingProxyType({}),
                        history=(), last_applied=10)

    def raft_status(self) -> Any:
        return SimpleNamespace(term=2)

    async def renew_lease(self, *args: Any, **kw: Any) -> bool:
        return True

    async def publish_member(self, name: str, record: dict[str, Any], timeout: float) -> None:
        self.published.append(record)

    # PostgresInstance
    async def status(self, timeout: float) -> PgStatus:
        if not self.running:
            return PgStatus(running=False)
        return PgStatus(running=True, postmaster_pid=4242, in_recovery=False, timeline=1, system_identifier=SYSID,
                        lsn=500, synchronous_standby_names="")

    async def wait_orphans_gone(self, timeout: float) -> None:
        pass

    def data_dir_state(self) -> DataDirState:
        return DataDirState.INITIALIZED

    async def controldata(self, timeout: float) -> Any:
        return SimpleNamespace(cluster_state=ClusterState.IN_PRODUCTION, timeline=1, system_identifier=SYSID)

    def surely_stopped(self) -> bool:
        return not self.running

    def rewind_interrupted(self) -> bool:
        return False

    def standby_signal_present(self) -> bool:
        return False

    def postmaster_pid(self) -> int | None:
        return 4242 if self.running else None

    async def start(self, *, standby: bool, locked: bool = False, **kw: Any) -> None:
        self.log.append(f"start {'standby' if standby else 'primary'}{' locked' if locked else ''}")
        self.running = True

    async def reload(self, parameters: dict[str, str], timeout: float, **kw: Any) -> None:
        self.log.append("reload")

    async def ensure_slots(self, names: frozenset[str], timeout: float, keep: frozenset[str],
                           advance: bool = False) -> None:
        self.log.append(f"slots {sorted(names)}")

    # FenceClient
    def is_armed(self) -> bool:
        return self.fence_armed

    async def arm(self, pid: int, deadline: float) -> int:
        self.log.append(f"arm fence {pid}")
        self.fence_armed = True
        return 1

    def feed(self, deadline: float) -> bool:
        return True

    async def disarm(self) -> None:
        self.fence_armed = False


async def test_a_crashed_primary_is_restarted_in_place_then_renewed() -> None:
    world = World()
    loop = HaLoop(make_settings(), world, world, world)  # type: ignore[arg-type]
    world.instance = loop.instance_id
    assert await loop.lease.renew(10.0, timeout=1)  # this process holds the lease; PostgreSQL crashed

    again = await loop.cycle()
    assert again  # the role changed: the next cycle at once
    assert world.log == ["start primary locked", "arm fence 4242", "reload"]  # opened only once fenced
    assert loop.memory.state is PgState.RUNNING and loop.memory.pg_down_since is None
    assert loop.memory.sync_names == ""  # asynchronous mode: nothing to block
    assert loop.status().role == "primary" and loop.status().is_writable_primary(boottime())
    assert world.published[-1]["role"] == "primary"

    world.log.clear()
    await loop.cycle()
    assert world.log == ["reload", "slots []"]  # configuration version 1 applied once; slots kept
    assert loop.memory.config_applied == 1
    assert "RenewLease: holding the lease" in loop.status().last_decision
    await loop.cycle()
    assert world.log == ["reload", "slots []", "slots []"]
    await loop.http.close()
