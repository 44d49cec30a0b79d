"""The REST API's NodeBackend on a witness member: the cluster-wide reads and Raft operations every
member serves; the PostgreSQL actions (restart, reload, reinitialize) are refused, as there is none."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from raftpg.cli.raft_backend import RaftBackend
from raftpg.cli.witness_member import WitnessMember
from raftpg.config import WitnessSettings
from raftpg.consensus import RaftNode
from raftpg.ha.status import NodeStatus
from raftpg.http.problems import PeerProblem

NO_POSTGRESQL = "this member is a witness: it runs no PostgreSQL"


class WitnessBackend(RaftBackend):
    def __init__(self, settings: WitnessSettings, raft: RaftNode, member: WitnessMember) -> None:
        super().__init__(raft, lambda: member.config().retry_timeout)
        self._settings = settings
        self._member = member

    @property
    def settings(self) -> WitnessSettings:
        return self._settings

    def status(self) -> NodeStatus:
        return self._member.status()

    def peer_problems(self) -> Mapping[str, PeerProblem]:
        """A witness calls no peer's REST API, so it has nothing to report."""
        return MappingProxyType({})

    async def request_restart(self, *, scheduled_at: float | None, role: str | None,
                              postgres_version: str | None, restart_pending: bool) -> str:
        raise ValueError(NO_POSTGRESQL)

    async def cancel_restart(self) -> bool:
        return False

    async def request_reload(self) -> str:
        raise ValueError(f"{NO_POSTGRESQL} to reload (changes to its node.yml need a restart of raftpg)")

    async def request_reinitialize(self) -> str:
        raise ValueError(NO_POSTGRESQL)
