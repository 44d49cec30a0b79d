"""The typed Raft operations, one log entry each (state.py defines what they do).

RaftNode (node.py) inherits them and supplies _submit: proposing, retrying and resolving unknown
outcomes. Arguments are plain JSON (pysyncobj pickles the log; plain() refuses anything else)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from raftpg.consensus import state as st
from raftpg.consensus.errors import ConsensusError


def request_id() -> str:
    return uuid.uuid4().hex


def plain(value: Any, what: str) -> Any:
    """JSON primitives only may enter the log (see state.py)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be plain JSON data: {e}") from e


class Commands:
    _scope: str

    async def _submit(self, command: dict[str, Any], timeout: float) -> bool:
        raise NotImplementedError

    async def ensure_cluster(self, *, timeout: float) -> bool:
        """Record this cluster's scope in the log; False if the log belongs to another scope."""
        return await self._submit(st.make_command("ensure_cluster", scope=self._scope), timeout)

    async def acquire_lease(
        self,
        name: str,
        instance_id: str,
        expected_version: int,
        expected_revision: int,
        ttl: float,
        *,
        bootstrapping: bool = False,
        timeout: float,
    ) -> bool:
        command = st.make_command(
            "acquire_lease",
            name=name,
            instance_id=instance_id,
            expected_version=expected_version,
            expected_revision=expected_revision,
            ttl=float(ttl),
            bootstrapping=bootstrapping,
            request_id=request_id(),
            wall_time=time.time(),
            inherit=True,
        )
        return await self._submit(command, timeout)

    async def renew_lease(
        self, name: str, instance_id: str, version: int, ttl: float, *, bootstrapping: bool = False,
        timeout: float,
    ) -> bool:
        command = st.make_command(
            "renew_lease",
            name=name,
            instance_id=instance_id,
            version=version,
            ttl=float(ttl),
            request_id=request_id(),
            bootstrapping=bootstrapping,
        )
        return await self._submit(command, timeout)

    async def release_lease(self, name: str, instance_id: str, version: int, *, timeout: float) -> bool:
        command = st.make_command(
            "release_lease", name=name, instance_id=instance_id, version=version, request_id=request_id()
        )
        return await self._submit(command, timeout)

    async def handover_lease(
        self,
        name: str,
        instance_id: str,
        version: int,
        to_name: str,
        to_instance_id: str,
        lsn: int | None,
        *,
        timeout: float,
    ) -> bool:
        command = st.make_command(
            "handover_lease",
            name=name,
            instance_id=instance_id,
            version=version,
            to_name=to_name,
            to_instance_id=to_instance_id,
            lsn=lsn,
            request_id=request_id(),
            both_hold_all=True,
        )
        return await self._submit(command, timeout)

    async def publish_member(self, name: str, record: Mapping[str, Any], *, timeout: float) -> None:
        command = st.make_command("publish_member", name=name, record=plain(dict(record), "member record"))
        if not await self._submit(command, timeout):
            raise ConsensusError(f"member record for {name!r} was rejected")

    async def remove_member(self, name: str, *, timeout: float) -> None:
        await self._submit(st.make_command("remove_member", name=name), timeout)

    async def set_config(
        self, config: Mapping[str, Any], expected_version: int | None, *, timeout: float
    ) -> bool:
        command = st.make_command(
            "set_config", config=plain(dict(config), "config"), expected_version=expected_version
        )
        return await self._submit(command, timeout)

    async def set_operation(
        self, name: str, record: Mapping[str, Any] | None, expected_revision: int, *, timeout: float
    ) -> bool:
        """Compare-and-set an operator operation's progress record (None ends it)."""
        command = st.make_command(
            "set_operation", name=name, record=None if record is None else plain(dict(record), "operation record"),
            expected_revision=expected_revision,
        )
        return await self._submit(command, timeout)

    async def initialize(
        self, name: str, instance_id: str, version: int, sysid: str, *, timeout: float
    ) -> bool:
        command = st.make_command(
            "initialize", name=name, instance_id=instance_id, version=version, sysid=sysid
        )
        return await self._submit(command, timeout)

    async def set_sync(
        self, name: str, instance_id: str, version: int, sync: Mapping[str, Any], *, timeout: float
    ) -> bool:
        command = st.make_command(
            "set_sync", name=name, instance_id=instance_id, version=version, sync=plain(dict(sync), "sync")
        )
        return await self._submit(command, timeout)

    async def append_history(
        self, name: str, instance_id: str, version: int, entry: Mapping[str, Any], *, timeout: float
    ) -> bool:
        """The entry gets a request_id unless it has one, so a retry never appends twice."""
        body = plain(dict(entry), "history entry")
        body.setdefault("request_id", request_id())
        command = st.make_command(
            "append_history", name=name, instance_id=instance_id, version=version, entry=body
        )
        return await self._submit(command, timeout)

    async def set_failover(self, request: Mapping[str, Any] | None, *, timeout: float) -> bool:
        """Set the pending failover/switchover request (None drops it). A request_id is added if
        missing; clear_failover(request_id) later removes exactly this request."""
        body = None
        if request is not None:
            body = plain(dict(request), "failover request")
            body.setdefault("request_id", request_id())
        return await self._submit(st.make_command("set_failover", request=body), timeout)

    async def clear_failover(self, request_id: str, *, reason: str | None = None, timeout: float) -> bool:
        """Drop that request (not a newer one); the reason tells the waiting API call why."""
        return await self._submit(st.make_command("clear_failover", request_id=request_id, reason=reason), timeout)
