"""LeaseKeeper with a fake Raft and fence: the deadline is the send time of the committed command
plus its ttl (rule 3), every grant feeds an armed fence margin seconds earlier (rule 2), and a
refused or foreign lease grants nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from raftpg.clock import boottime
from raftpg.ha.lease import LeaseKeeper, fence_margin

pytestmark = pytest.mark.unit

TTL = 5.0


@dataclass
class FakeRaft:
    holder: str | None = None
    instance: str | None = None
    commits: bool = True
    calls: list[str] = field(default_factory=list)

    def snapshot(self) -> Any:
        return SimpleNamespace(lease=SimpleNamespace(holder=self.holder, instance_id=self.instance, version=4,
                                                     bootstrapping=False))

    async def acquire_lease(self, name: str, instance: str, *args: Any, **kw: Any) -> bool:
        self.calls.append("acquire")
        if self.commits:
            self.holder, self.instance = name, instance
        return self.commits

    async def renew_lease(self, *args: Any, **kw: Any) -> bool:
        self.calls.append("renew")
        return self.commits

    async def release_lease(self, *args: Any, **kw: Any) -> bool:
        self.calls.append("release")
        return True


@dataclass
class FakeFence:
    armed_at: float | None = None
    fed: list[float] = field(default_factory=list)

    def is_armed(self) -> bool:
        return self.armed_at is not None

    async def arm(self, pid: int, deadline: float) -> int:
        self.armed_at = deadline
        return 1

    def feed(self, deadline: float) -> bool:
        self.fed.append(deadline)
        return True


def keeper(raft: FakeRaft, fence: FakeFence) -> LeaseKeeper:
    return LeaseKeeper(raft, fence, "node1", "i-node1")  # type: ignore[arg-type]


async def test_acquire_sets_the_deadline_from_the_send_time_and_arms_only_with_a_lease() -> None:
    raft, fence = FakeRaft(), FakeFence()
    lease = keeper(raft, fence)
    with pytest.raises(RuntimeError, match="without a committed lease"):
        await lease.arm_fence(4242)
    before = boottime()
    assert await lease.acquire(3, 40, TTL, bootstrapping=False, timeout=1)
    after = boottime()
    assert lease.deadline is not None and before + TTL <= lease.deadline <= after + TTL
    assert lease.held() and not lease.holds(lease.deadline)
    await lease.arm_fence(4242)
    assert fence.armed_at == lease.deadline - fence_margin(TTL)


async def test_renewals_feed_an_armed_fence_and_refusals_grant_nothing() -> None:
    raft, fence = FakeRaft("node1", "i-node1"), FakeFence(armed_at=0.0)
    lease = keeper(raft, fence)
    assert await lease.renew(TTL, timeout=1)
    assert lease.deadline is not None and fence.fed == [lease.deadline - fence_margin(TTL)]
    raft.commits = False
    granted = lease.deadline
    assert not await lease.renew(TTL, timeout=1)
    assert lease.deadline == granted and len(fence.fed) == 1


async def test_a_lease_held_by_another_instance_is_not_renewed() -> None:
    raft = FakeRaft("node1", "i-an-earlier-process")
    lease = keeper(raft, FakeFence())
    assert not await lease.renew(TTL, timeout=1)
    assert raft.calls == [] and lease.deadline is None


async def test_release_forgets_the_deadline_first() -> None:
    raft = FakeRaft("node1", "i-node1")
    lease = keeper(raft, FakeFence())
    await lease.renew(TTL, timeout=1)
    assert await lease.release(timeout=1)
    assert lease.deadline is None and not lease.held() and raft.calls == ["renew", "release"]
