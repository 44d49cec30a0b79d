"""The daemon's implementation of the REST API's NodeBackend: cached reads, requested actions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from raftpg.cli.raft_backend import RaftBackend
from raftpg.config import Settings
from raftpg.consensus import RaftNode
from raftpg.ha.executor import LocalRequest
from raftpg.ha.loop import HaLoop
from raftpg.ha.status import NodeStatus
from raftpg.http.problems import PeerProblem


class DaemonBackend(RaftBackend):
    def __init__(self, settings: Settings, raft: RaftNode, ha: HaLoop) -> None:
        super().__init__(raft, lambda: ha.config().retry_timeout)
        self._settings = settings
        self._ha = ha

    @property
    def settings(self) -> Settings:
        return self._settings

    def status(self) -> NodeStatus:
        return self._ha.status()

    def peer_problems(self) -> Mapping[str, PeerProblem]:
        return self._ha.http.problems()

    def config_changed(self) -> None:
        self._ha.wake()

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


def _version_number(text: str) -> int:
    """'15.4' -> 150004, as server_version_num."""
    parts = [int(p) for p in text.split(".")[:2]] + [0]
    return parts[0] * 10000 + parts[1]
