"""A fake NodeBackend that answers like a running primary (or as a test sets it), for the HTTP layer's
tests and the API load benchmark: the API reads only cached state, so a fake is all it needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from raftpg.api import ClusterInfo
from raftpg.config import (
    Address,
    Auth,
    BootstrapSettings,
    DynamicConfig,
    LogSettings,
    PostgresSettings,
    RaftSettings,
    RestApiSettings,
    Settings,
    Tags,
    WatchdogSettings,
)
from raftpg.consensus.model import RaftStatus
from raftpg.ha.status import NodeStatus, ReplicationInfo
from raftpg.http.problems import PeerProblem

NOW = 1000.0  # boottime of the fake node
WALL = 1_700_000_000.0  # Unix time of the fake node
MB = 1024 * 1024
LEADER_LSN = 0x5000000


def make_settings(auth: Auth | None = None, **restapi: Any) -> Settings:
    api = RestApiSettings(
        listen=Address("127.0.0.1", 0), connect_address=Address("127.0.0.1", 8008), authentication=auth,
        certfile=None, keyfile=None, cafile=None, verify_client="none",
    )
    pg_auth = Auth("postgres", "pw")
    return Settings(
        scope="demo",
        name="node1",
        raft=RaftSettings(Address("127.0.0.1", 5010), (), Path("/nonexistent/raft"), "x" * 32),
        restapi=replace(api, **restapi),
        postgresql=PostgresSettings(
            listen=Address("127.0.0.1", 5432), connect_address=Address("127.0.0.1", 5432),
            data_dir=Path("/nonexistent/pg"), bin_dir=Path("/nonexistent/bin"), socket_dir=Path("/tmp"),
            superuser=pg_auth, replication=pg_auth, parameters=MappingProxyType({}), pg_hba=(),
        ),
        bootstrap=BootstrapSettings(dcs=DynamicConfig(), initdb=()),
        tags=Tags(),
        watchdog=WatchdogSettings(),
        log=LogSettings(),
    )


def primary_status(**changes: Any) -> NodeStatus:
    status = NodeStatus(
        name="node1", scope="demo", role="primary", state="running", pg_running=True, in_recovery=False,
        timeline=3, server_version=150004, system_identifier="7312345678901234567", wal_lsn=LEADER_LSN,
        replication=(ReplicationInfo("node2", "127.0.0.2", "streaming", "sync", replay_lsn=LEADER_LSN),),
        lease_holder="node1", lease_version=5, lease_deadline=NOW + 5.0, lease_margin=0.5,
        updated_at=NOW - 0.5, postmaster_start_time="2024-01-01 00:00:00+00:00",
    )
    return replace(status, **changes)


def replica_status(**changes: Any) -> NodeStatus:
    status = NodeStatus(
        name="node1", scope="demo", role="replica", state="running", pg_running=True, in_recovery=True,
        timeline=3, server_version=150004, system_identifier="7312345678901234567",
        receive_lsn=LEADER_LSN - MB, replay_lsn=LEADER_LSN - 2 * MB, upstream="node2", streaming=True,
        lease_holder="node2", lease_version=5, updated_at=NOW - 0.5,
    )
    return replace(status, **changes)


def member(role: str, lsn: int | None, state: str = "running", **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "role": role, "state": state, "host": "127.0.0.1", "port": 5432, "api_url": "http://127.0.0.1:8008",
        "timeline": 3, "lsn": lsn, "receive_lsn": lsn, "replay_lsn": lsn, "tags": Tags().to_dict(),
        "pending_restart": False,
    }
    record.update(extra)
    return record


def make_cluster(holder: str | None = "node1", **changes: Any) -> ClusterInfo:
    cluster = ClusterInfo(
        scope="demo",
        members={
            "node1": member("primary" if holder == "node1" else "replica", LEADER_LSN),
            "node2": member("primary" if holder == "node2" else "replica", LEADER_LSN),
            "node3": member("replica", LEADER_LSN - 3 * MB),
        },
        lease_holder=holder,
        lease_version=5,
        config=DynamicConfig().to_dict(),
        config_version=4,
        sync={"leader": holder, "members": ["node2"], "quorum": 1},
        history=({"timeline": 2, "lsn": 0x3000000, "reason": "switchover", "time": WALL - 60, "leader": "node1"},),
    )
    return replace(cluster, **changes)


def raft_status() -> RaftStatus:
    return RaftStatus(
        self_addr="127.0.0.1:5010", leader="127.0.0.1:5010", is_leader=True, term=7, commit_index=120,
        last_applied=120, has_quorum=True, partners={"127.0.0.1:5011": True, "127.0.0.1:5012": False},
        tick_thread_alive=True, journal_bytes=4096, log_len=12,
    )


class FakeBackend:
    """Records every request; `move_lease_to` makes an immediate switchover/failover complete."""

    def __init__(self, status: NodeStatus | None = None, cluster: ClusterInfo | None = None,
                 settings: Settings | None = None) -> None:
        self.settings = settings or make_settings()
        self.node_status = status or primary_status()
        self.cluster_info = cluster or make_cluster()
        self.clock = NOW
        self.failover_writes: list[Mapping[str, Any] | None] = []
        self.config_writes: list[tuple[Mapping[str, Any], int]] = []
        self.calls: list[tuple[str, Any]] = []
        self.move_lease_to: str | None = None
        self.drop_reason: str | None = None
        self.store_ok = True
        self.error: Exception | None = None
        self.problems: dict[str, PeerProblem] = {}

    def status(self) -> NodeStatus:
        return self.node_status

    def now(self) -> float:
        return self.clock

    def cluster(self) -> ClusterInfo:
        return self.cluster_info

    def raft_status(self) -> RaftStatus:
        return raft_status()

    def peer_problems(self) -> Mapping[str, PeerProblem]:
        return self.problems

    def _maybe_fail(self) -> None:
        if self.error is not None:
            raise self.error

    async def set_failover(self, request: Mapping[str, Any] | None) -> bool:
        self._maybe_fail()
        self.failover_writes.append(request)
        if self.store_ok:
            self.cluster_info = replace(self.cluster_info, failover=request)
            if request is not None and request["scheduled_at"] is None and self.move_lease_to is not None:
                self.cluster_info = replace(self.cluster_info, lease_holder=self.move_lease_to, failover=None)
            if request is not None and self.drop_reason is not None:
                dropped = {"request_id": request["request_id"], "reason": self.drop_reason}
                self.cluster_info = replace(self.cluster_info, failover=None, failover_dropped=dropped)
        return self.store_ok

    async def set_config(self, config: Mapping[str, Any], expected_version: int) -> bool:
        self.config_writes.append((config, expected_version))
        if not self.store_ok or expected_version != self.cluster_info.config_version:
            return False
        self.cluster_info = replace(self.cluster_info, config=config, config_version=expected_version + 1)
        return True

    async def set_operation(self, name: str, record: Mapping[str, Any] | None, expected_revision: int) -> bool:
        self._maybe_fail()
        current = self.cluster_info.operations.get(name) or {"revision": 0}
        if not self.store_ok or current["revision"] != expected_revision:
            return False
        operations = {**self.cluster_info.operations, name: {"revision": expected_revision + 1, "record": record}}
        self.cluster_info = replace(self.cluster_info, operations=operations)
        return True

    async def request_restart(self, *, scheduled_at: float | None, role: str | None,
                              postgres_version: str | None, restart_pending: bool) -> str:
        self._maybe_fail()
        self.calls.append(("restart", (scheduled_at, role, postgres_version, restart_pending)))
        return "restart scheduled" if scheduled_at is not None else "restarted successfully"

    async def cancel_restart(self) -> bool:
        self.calls.append(("cancel_restart", None))
        return any(name == "restart" for name, _ in self.calls)

    async def request_reload(self) -> str:
        self.calls.append(("reload", None))
        return "reload scheduled"

    async def request_reinitialize(self) -> str:
        self._maybe_fail()
        self.calls.append(("reinitialize", None))
        return "reinitialize started"

    async def catch_up(self) -> None:
        self.calls.append(("catch_up", None))

    async def add_raft_member(self, addr: str) -> None:
        self._maybe_fail()
        self.calls.append(("add_raft_member", addr))

    async def remove_raft_member(self, addr: str) -> None:
        self._maybe_fail()
        self.calls.append(("remove_raft_member", addr))
