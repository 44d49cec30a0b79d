"""The object pysyncobj replicates: it applies log entries on pysyncobj's tick thread.

Serialisation rule of pysyncobj: a consumer's attributes that exist when SyncObjConsumer.__init__
runs are internal; every attribute created later goes into the full dump. So the local-only
bookkeeping is created before that call and `state` after it: the dump holds exactly
{"state": <JSON-able dict>}.

Journal compatibility rule: pysyncobj numbers replicated methods by sorted name and writes the
number into the journal. There is exactly one replicated method, `apply_command`, taking one
JSON-able dict; new operations are new "op" values, never new replicated methods.

Threads: only the tick thread writes. Each applied command builds a new state dict (copy on
write) and publishes it, with the local applied-at times, as one immutable `Published` object
swapped by reference, so readers on the event loop never see a torn or half-applied state.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pysyncobj import SyncObjConsumer, replicated

from raftpg.consensus import state as st
from raftpg.consensus.model import Lease, Snapshot

logger = logging.getLogger(__name__)

NOOP_IDS_KEPT = 256


def copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """Deep copy of a JSON-primitive dict; pickle round trip is ~5x faster than copy.deepcopy."""
    copied: dict[str, Any] = pickle.loads(pickle.dumps(state, pickle.HIGHEST_PROTOCOL))
    return copied


@dataclass(frozen=True)
class Published:
    """What readers see. `state` is never mutated after publication."""

    state: Mapping[str, Any]
    lease_applied_at: float
    member_applied_at: Mapping[str, float]
    noop_ids: frozenset[str]


def lease_of(published: Published) -> Lease:
    """Published state is never mutated: read without copying, also from the tick thread."""
    lease = published.state["lease"]
    return Lease(
        holder=lease["holder"],
        instance_id=lease["instance_id"],
        version=lease["version"],
        revision=lease["revision"],
        ttl=lease["ttl"],
        lsn_at_handover=lease["lsn_at_handover"],
        bootstrapping=lease["bootstrapping"],
        applied_at=published.lease_applied_at,
    )


def snapshot_of(published: Published, last_applied: int) -> Snapshot:
    """A deep copy: its readers never reach the published state."""
    state = copy_state(published.state)
    return Snapshot(
        scope=state["cluster"]["scope"],
        initialize=state["initialize"],
        lease=lease_of(published),
        members=state["members"],
        member_applied_at=dict(published.member_applied_at),
        config=state["config"],
        config_version=state["config_version"],
        failover=state["failover"],
        failover_dropped=state["failover_dropped"],
        sync=state["sync"],
        history=tuple(state["history"]),
        operations=state["operations"] if isinstance(state["operations"], dict) else {},
        last_applied=last_applied,
    )


class StateMachine(SyncObjConsumer):  # type: ignore[misc]
    def __init__(self, clock: Callable[[], float], on_change: Callable[[], None]) -> None:
        # Created before SyncObjConsumer.__init__: local-only, never in the dump.
        self._clock = clock
        self._on_change = on_change
        self._noop_order: tuple[str, ...] = ()
        self.published = Published(st.initial_state(), clock(), MappingProxyType({}), frozenset())
        super().__init__()
        # Created after: the replicated state, the only thing pysyncobj serialises.
        self.state: dict[str, Any] = st.initial_state()

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, command: dict[str, Any]) -> bool:
        """Runs on the tick thread for each committed entry. Must never raise: pysyncobj would
        retry the same entry on every tick."""
        old = self.state
        new = copy_state(old)
        try:
            result = st.apply_command(new, command)
        except Exception:
            logger.exception("rejected malformed consensus command %r", command)
            return False
        changed = new != old
        if changed:
            self.state = new
        self._publish(command, result)
        if changed:
            self._notify()
        return result

    def _deserialize(self, data: Any) -> None:
        """A full dump was loaded (start-up or snapshot from the leader). Local applied-at times
        restart from now: followers then wait a full ttl, the conservative choice."""
        super()._deserialize(data)
        self.state = st.normalize(self.state)
        now = self._clock()
        self.published = Published(
            self.state,
            now,
            MappingProxyType(dict.fromkeys(self.state["members"], now)),
            self.published.noop_ids,
        )
        logger.info("loaded Raft full dump; lease and member ages restart from now")
        self._notify()

    def _publish(self, command: Mapping[str, Any], result: bool) -> None:
        prev = self.published
        state = self.state
        now = self._clock()
        lease_at = now if state["lease"] != prev.state["lease"] else prev.lease_applied_at
        op = command.get("op")
        args = command.get("args") or {}
        heartbeat = args.get("name") if op == "publish_member" and result else None
        member_at = MappingProxyType(
            {
                name: now if name == heartbeat or name not in prev.member_applied_at
                else prev.member_applied_at[name]
                for name in state["members"]
            }
        )
        noop_ids = prev.noop_ids
        if op == "noop" and isinstance(args.get("request_id"), str):
            self._noop_order = (*self._noop_order, args["request_id"])[-NOOP_IDS_KEPT:]
            noop_ids = frozenset(self._noop_order)
        self.published = Published(state, lease_at, member_at, noop_ids)

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:
            logger.exception("consensus change notification failed")
