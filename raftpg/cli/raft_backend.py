"""The part of the REST API's NodeBackend every member serves from its own Raft replica, database
member and witness alike: cluster reads, the switchover/config/operation records, Raft membership."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from raftpg.api.backend import ClusterInfo
from raftpg.clock import boottime
from raftpg.consensus import OutcomeUnknown, RaftNode, RaftStatus

CONFIG_ATTEMPTS = 3


class RaftBackend:
    def __init__(self, raft: RaftNode, retry_timeout: Callable[[], float]) -> None:
        """`retry_timeout`: the dynamic configuration's, as in force at each call."""
        self._raft = raft
        self._retry_timeout = retry_timeout

    def now(self) -> float:
        return boottime()

    def cluster(self) -> ClusterInfo:
        return ClusterInfo.from_snapshot(self._raft.snapshot())

    def raft_status(self) -> RaftStatus:
        return self._raft.raft_status()

    def _timeout(self) -> float:
        return self._retry_timeout()

    async def set_failover(self, request: Mapping[str, Any] | None) -> bool:
        return await self._raft.set_failover(request, timeout=self._timeout())

    async def set_config(self, config: Mapping[str, Any], expected_version: int) -> bool:
        """Compare-and-set; a Raft leader change mid-call is resolved by reading back, and the
        command is retried only if it provably did not apply (the version check makes that safe)."""
        for attempt in range(CONFIG_ATTEMPTS):
            try:
                ok = await self._raft.set_config(config, expected_version, timeout=self._timeout())
                self.config_changed()
                return ok
            except OutcomeUnknown:
                if attempt == CONFIG_ATTEMPTS - 1:
                    raise
                await self._raft.barrier(timeout=self._timeout())
                snap = self._raft.snapshot()
                if snap.config_version != expected_version:
                    self.config_changed()
                    return snap.config_version == expected_version + 1 and dict(snap.config) == dict(config)
        raise AssertionError("unreachable")

    def config_changed(self) -> None:
        """Called when a set_config may have changed the configuration (the daemon wakes its HA loop)."""

    async def set_operation(self, name: str, record: Mapping[str, Any] | None, expected_revision: int) -> bool:
        return await self._raft.set_operation(name, record, expected_revision, timeout=self._timeout())

    async def catch_up(self) -> None:
        await self._raft.barrier(timeout=self._timeout())

    async def add_raft_member(self, addr: str) -> None:
        await self._raft.add_member_addr(addr, timeout=self._timeout())

    async def remove_raft_member(self, addr: str) -> None:
        await self._raft.remove_member_addr(addr, timeout=self._timeout())
