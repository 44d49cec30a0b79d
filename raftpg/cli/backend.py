"""The daemon's implementation of the REST API's NodeBackend: cached reads, requested actions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from raftpg.api.backend import ClusterInfo
from raftpg.clock import boottime
from raftpg.config import Settings
from raftpg.consensus import OutcomeUnknown, RaftNode, RaftStatus
from raftpg.ha.executor import LocalRequest
from raftpg.ha.loop import HaLoop
from raftpg.ha.status import NodeStatus
from raftpg.http.problems import PeerProblem

CONFIG_ATTEMPTS = 3


class DaemonBackend:
    def __init__(self, settings: Settings, raft: RaftNode, ha: HaLoop) -> None:
        self._settings = settings
        self._raft = raft
        self._ha = ha

    @property
    def settings(self) -> Settings:
        return self._settings

    def status(self) -> NodeStatus:
        return self._ha.status()

    def now(self) -> float:
        return boottime()

    def cluster(self) -> ClusterInfo:
        return ClusterInfo.from_snapshot(self._raft.snapshot())

    def raft_status(self) -> RaftStatus:
        return self._raft.raft_status()

    def peer_problems(self) -> Mapping[str, PeerProblem]:
        return self._ha.http.problems()

    def _timeout(self) -> float:
        return self._ha.config().retry_timeout

    async def set_failover(self, request: Mapping[str, Any] | None) -> bool:
        return await self._raft.set_failover(request, timeout=self._timeout())

    async def set_config(self, config: Mapping[str, Any], expected_version: int) -> bool:
        """Compare-and-set; a Raft leader change mid-call is resolved by reading back, and the
        command is retried only if it provably did not apply (the version check makes that safe)."""
        for attempt in range(CONFIG_ATTEMPTS):
            try:
                ok = await self._raft.set_config(config, expected_version, timeout=self._timeout())
                self._ha.wake()
                return ok
            except OutcomeUnknown:
                if attempt == CONFIG_ATTEMPTS - 1:
                    raise
                await self._raft.barrier(timeout=self._timeout())
                snap = self._raft.snapshot()
                if snap.config_version != expected_version:
                    self._ha.wake()
                    return snap.config_version == expected_version + 1 and dict(snap.config) == dict(config)
        raise AssertionError("unreachable")

    async def set_operation(self, name: str, record: Mapping[str, Any] | None, expected_revision: int) -> bool:
        return await self._raft.set_operation(name, record, expected_revision, timeout=self._timeout())

    async def _local(self, request: LocalRequest) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._ha.submit(request, future)
        return await asyncio.wait_for(future, timeout=max(120.0, self._ha.config().ttl * 10))

    async def request_restart(self, *, scheduled_at: float | None, role: str | None,
                              postgres_version: str | None, restart_pending: bool) -> str:
        status = self._ha.status()
        if (postgres_version is not None and status.server_version is not None
                and status.server_version >= _version_number(postgres_version)):
            raise ValueError(f"PostgreSQL {status.server_version} is not older than {postgres_version}")
        if restart_pending and not status.pending_restart:
            raise ValueError("no restart pending")
        if role is not None and role not in ("any", status.role):
            raise ValueError(f"role {status.role} does not match {role}")
        if scheduled_at is not None:
            self._ha.schedule_restart(scheduled_at)
            return "restart scheduled"
        return await self._local(LocalRequest("restart"))

    async def cancel_restart(self) -> bool:
        return self._ha.cancel_scheduled_restart()

    async def request_reload(self) -> str:
        return await self._local(LocalRequest("reload"))

    async def request_reinitialize(self) -> str:
        if self._ha.status().role == "primary":
            raise ValueError("cannot reinitialize the primary")
        return await self._local(LocalRequest("reinitialize"))

    async def catch_up(self) -> None:
        await self._raft.barrier(timeout=self._timeout())

    async def add_raft_member(self, addr: str) -> None:
        await self._raft.add_member_addr(addr, timeout=self._timeout())

    async def remove_raft_member(self, addr: str) -> None:
        await self._raft.remove_member_addr(addr, timeout=self._timeout())


def _version_number(text: str) -> int:
    """'15.4' -> 150004, as server_version_num."""
    parts = [int(p) for p in text.split(".")[:2]] + [0]
    return parts[0] * 10000 + parts[1]
