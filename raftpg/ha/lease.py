"""This process's own hold on the lease: the committed deadline, and the fence that enforces it.

The deadline is `sent_at of our last committed renewal + ttl` on our own clock (DESIGN rule 3).
Every successful acquire or renew moves it forward and feeds the fence, which stops PostgreSQL by
itself once the deadline passes (rule 2), whatever happens to this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from raftpg.clock import boottime
from raftpg.consensus import ConsensusError, RaftNode
from raftpg.fence.client import FenceClient
from raftpg.ha.watchdog import Watchdog, WatchdogError

logger = logging.getLogger(__name__)


def fence_margin(ttl: float) -> float:
    """How long before our deadline we stop answering /primary and the fence stops PostgreSQL.

    A follower sees the lease expire no earlier than our deadline and then still needs a Raft
    commit and a promotion; the margin covers killing the postmaster before that.
    """
    return min(1.0, max(0.6, ttl * 0.12))


class LeaseKeeper:
    def __init__(self, raft: RaftNode, fence: FenceClient, name: str, instance_id: str,
                 watchdog: Watchdog | None = None) -> None:
        self._raft = raft
        self._fence = fence
        self._watchdog = watchdog
        self.name = name
        self.instance_id = instance_id
        self.deadline: float | None = None
        self.ttl: float = 0.0

    def holds(self, now: float) -> bool:
        return self.deadline is not None and now < self.deadline

    def held(self) -> bool:
        """holds() at this very moment: the interlock checked right before an irreversible step."""
        return self.holds(boottime())

    def forget(self) -> None:
        self.deadline = None

    async def acquire(self, version: int, revision: int, ttl: float, *, bootstrapping: bool,
                      timeout: float) -> bool:
        sent_at = boottime()
        ok = await self._raft.acquire_lease(self.name, self.instance_id, version, revision, ttl,
                                            bootstrapping=bootstrapping, timeout=timeout)
        if ok:
            self._granted(sent_at, ttl)
        return ok

    async def renew(self, ttl: float, *, clear_bootstrapping: bool = False, timeout: float) -> bool:
        lease = self._raft.snapshot().lease
        if lease.holder != self.name or lease.instance_id != self.instance_id:
            return False
        sent_at = boottime()
        # The renewal carries the configured ttl: leader and followers both time it from this entry.
        ok = await self._raft.renew_lease(self.name, self.instance_id, lease.version, ttl,
                                          bootstrapping=lease.bootstrapping and not clear_bootstrapping,
                                          timeout=timeout)
        if ok:
            self._granted(sent_at, ttl)
        return ok

    async def release(self, timeout: float) -> bool:
        version = self._raft.snapshot().lease.version
        self.forget()
        return await self._raft.release_lease(self.name, self.instance_id, version, timeout=timeout)

    def _granted(self, sent_at: float, ttl: float) -> None:
        self.deadline = sent_at + ttl
        self.ttl = ttl
        if self._fence.is_armed():
            self._fence.feed(self.deadline - fence_margin(ttl))
        if self._watchdog is not None and self._watchdog.armed:
            try:
                self._watchdog.keepalive()
            except WatchdogError as exc:
                logger.error("watchdog keepalive failed: %s", exc)

    async def arm_fence(self, postmaster_pid: int) -> None:
        if self.deadline is None:
            raise RuntimeError("refusing to arm the fence without a committed lease")
        await self._fence.arm(postmaster_pid, self.deadline - fence_margin(self.ttl))

    async def disarm_fence(self) -> None:
        await self._fence.disarm()

    @contextlib.asynccontextmanager
    async def kept_alive(self, interval: float, timeout: float) -> AsyncIterator[None]:
        """Renew in the background while a long action (initdb, switchover) runs."""
        async def renew_forever() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    if not await self.renew(self.ttl, timeout=timeout):
                        logger.warning("background lease renewal refused: the lease is no longer ours")
                        return
                except ConsensusError as exc:
                    logger.warning("background lease renewal failed: %s", exc)

        task = asyncio.create_task(renew_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
