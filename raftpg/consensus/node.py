"""RaftNode: the embedded Raft replica, callable from asyncio.

pysyncobj runs its own tick thread. Commands are proposed with a callback that completes an
asyncio future through call_soon_threadsafe; nothing here blocks the event loop on Raft.

Outcomes (DESIGN "pysyncobj settings"): MISSING_LEADER / NOT_LEADER mean the command was never
appended, so it is proposed again until the timeout (then NoQuorum). LEADER_CHANGED, DISCARDED,
UNKNOWN_OUTCOME, QUEUE_FULL and our own timeout leave the outcome unknown: the local replica is
re-read (polling while time remains) and the command's request id or its condition decides; if
that cannot tell, OutcomeUnknown is raised. Nothing is ever re-proposed after an unknown outcome.
That is why every command takes `timeout` itself: the remaining time also bounds the re-read,
which cancelling the call from outside (asyncio.timeout) could not do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pysyncobj import FAIL_REASON, SyncObjException

from raftpg.clock import boottime
from raftpg.consensus import state as st
from raftpg.consensus.commands import Commands, request_id
from raftpg.consensus.errors import ConsensusError, NoQuorum, OutcomeUnknown
from raftpg.consensus.file_modes import FileModeGuard, fix_file_modes, prepare_data_dir
from raftpg.consensus.lease_follower import LeaseFollower
from raftpg.consensus.machine import StateMachine, snapshot_of
from raftpg.consensus.model import RaftStatus, Snapshot
from raftpg.consensus.outcome import Resolver, resolver_for
from raftpg.consensus.pysyncobj_internals import check, cluster_addrs, destroy_unstarted, read_status
from raftpg.consensus.replica import Replica
from raftpg.consensus.settings import DUMP_FILE, JOURNAL_FILE, build_conf, derive_key, validate_timings

logger = logging.getLogger(__name__)

_STOPPED = -1  # error code given to futures still pending when the node stops
_NOT_PROPOSED = -2  # pysyncobj refused to take the command at all (see _propose)
_RETRY = frozenset({FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER, _NOT_PROPOSED})
# Ops whose second application is harmless (holder-conditioned, request-id deduplicated or
# idempotent) and whose resolver recognises an earlier attempt: after a leader change they are
# proposed again to the new leader instead of waiting out the whole timeout on a lost entry.
_REPROPOSABLE = frozenset({"renew_lease", "release_lease", "handover_lease", "publish_member",
                           "append_history", "clear_failover"})
_LOST_ENTRY = frozenset({FAIL_REASON.LEADER_CHANGED, FAIL_REASON.DISCARDED})
_BACKOFF_FIRST = 0.02
_BACKOFF_MAX = 0.2
_RESOLVE_POLL = 0.02
_HAND_OFF_WAIT = 1.0  # at most this long, a stopping leader waits for its successor

_Reply = tuple[Any, int]


def _settle(fut: asyncio.Future[_Reply], result: Any, error: int) -> None:
    if not fut.done():
        fut.set_result((result, error))


class RaftNode(Commands):
    """One Raft replica of the cluster state. Single use: start() once, stop() once."""

    def __init__(
        self,
        *,
        scope: str,
        self_addr: str,
        partner_addrs: Sequence[str],
        data_dir: Path,
        password: str,
        timings: Mapping[str, float],
        on_change: Callable[[], None] | None = None,
        joining: bool = False,
    ) -> None:
        """joining: this replica's log was wiped; it stays out of elections until finish_joining()
        (replica.py says why)."""
        derive_key(scope, password)  # fail early on a missing password or bad scope
        check()  # fail early on a pysyncobj that lacks an internal we rely on
        self._joining = joining
        self._scope = scope
        self._self_addr = self_addr
        self._partner_addrs = [addr for addr in partner_addrs if addr != self_addr]
        self._data_dir = Path(data_dir)
        self._password = password
        self._timings = validate_timings(timings)
        self._on_change = on_change
        self._machine = StateMachine(boottime, self._schedule_change)
        self._syncobj: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self._change_pending = False
        self._pending: set[asyncio.Future[_Reply]] = set()
        self._lease_follower: LeaseFollower | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Create the replica. The SyncObj is built on the loop's thread on purpose: pysyncobj's
        tick thread stops when the thread that created it ends. That costs ~20-50 ms once
        (key derivation, journal load, bind)."""
        if self._syncobj is not None or self._stopped:
            raise ConsensusError("RaftNode.start() called twice")
        self._loop = asyncio.get_running_loop()
        prepare_data_dir(self._data_dir)
        conf = build_conf(
            scope=self._scope,
            password=self._password,
            self_addr=self._self_addr,
            data_dir=self._data_dir,
            timings=self._timings,
        )
        try:
            obj = Replica(self._self_addr, self._partner_addrs, conf, consumers=[self._machine],
                          journal_file=self._data_dir / JOURNAL_FILE, dump_file=self._data_dir / DUMP_FILE,
                          stands_for_election=not self._joining)
        except Exception as e:
            raise ConsensusError(f"cannot start Raft replica on {self._self_addr}: {e}") from e
        try:
            obj.waitBinded()
        except SyncObjException as e:
            destroy_unstarted(obj)
            raise ConsensusError(
                f"cannot bind Raft address {self._self_addr}: port in use or address not on this host"
            ) from e
        self._lease_follower = LeaseFollower(obj, self._self_addr, lambda: self._machine.published)
        obj.addOnTickCallback(FileModeGuard(self._data_dir).on_tick)
        obj.addOnTickCallback(self._follow_lease)
        self._syncobj = obj
        logger.info(
            "Raft replica started on %s with partners %s (data in %s)",
            self._self_addr, ", ".join(self._partner_addrs) or "none", self._data_dir,
        )

    def finish_joining(self) -> None:
        """Call once the replica has the cluster's log (a barrier committed through a leader)."""
        if self._joining:
            self._joining = False
            self._require().stand_for_election()
            logger.info("rejoined: this replica has the cluster's Raft log and stands for election again")

    async def stop(self, timeout: float = 5.0) -> None:
        """Hand Raft leadership on (bounded), destroy the replica and wait (bounded) for its tick
        thread to end. A leader that simply vanished would cost the others an election timeout."""
        if self._stopped:
            return
        obj = self._syncobj
        if obj is not None and obj.tick_thread_alive():
            status = self.raft_status()
            if status.is_leader and any(status.partners.values()):
                await self._hand_off_leadership(min(_HAND_OFF_WAIT, timeout / 2))
        self._stopped = True
        if obj is not None:
            obj.destroy()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while obj.tick_thread_alive() and loop.time() < deadline:  # noqa: ASYNC110 (a thread)
                await asyncio.sleep(0.01)
            if obj.tick_thread_alive():
                logger.warning("Raft tick thread did not stop within %.1fs", timeout)
            fix_file_modes(self._data_dir)
        for fut in list(self._pending):
            _settle(fut, None, _STOPPED)
        logger.info("Raft replica on %s stopped", self._self_addr)

    async def _hand_off_leadership(self, wait: float) -> None:
        assert self._lease_follower is not None
        self._lease_follower.handing_off = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline and self.raft_status().leader in (None, self._self_addr):  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # the tick thread acts; then a successor wins its election
        leader = self.raft_status().leader
        if leader not in (None, self._self_addr):
            logger.info("Raft leadership handed to %s before stopping", leader)
        else:
            logger.info("Raft leadership not handed on within %.1fs: the others elect a leader after their "
                        "election timeout", wait)

    def _follow_lease(self) -> None:
        """Tick thread: lease_follower.py's rule, until the node stops."""
        if self._lease_follower is not None and not self._stopped:
            self._lease_follower.on_tick()

    def tick_thread_alive(self) -> bool:
        return bool(self._syncobj is not None and self._syncobj.tick_thread_alive())

    def request_compaction(self) -> None:
        """Write the full dump and truncate the journal at the next tick."""
        self._require().forceLogCompaction()

    # ----------------------------------------------------------------- reads

    def snapshot(self) -> Snapshot:
        """A copy of the local replica's state, the caller's to keep or change."""
        return snapshot_of(self._machine.published, self._syncobj.raftLastApplied if self._syncobj is not None else 0)

    def raft_status(self) -> RaftStatus:
        return read_status(self._require(allow_stopped=True), self._self_addr, self._data_dir / JOURNAL_FILE)

    # ----------------------------------------------------------------- commands

    async def barrier(self, timeout: float) -> None:
        """Return once a no-op proposed now has committed and been applied here (DESIGN start-up
        barrier). Every no-op is harmless, so a lost one is simply proposed again."""
        loop = self._require_loop()
        deadline = loop.time() + timeout
        proposed: list[str] = []
        backoff = _BACKOFF_FIRST
        while True:
            if not self._machine.published.noop_ids.isdisjoint(proposed):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NoQuorum(f"barrier: no no-op committed within {timeout:.1f}s")
            noop_id = request_id()
            proposed.append(noop_id)
            try:
                _, error = await asyncio.wait_for(
                    self._propose(st.make_command("noop", request_id=noop_id)), remaining
                )
            except TimeoutError:
                continue
            if error == FAIL_REASON.SUCCESS:
                return
            if error == _STOPPED:
                raise ConsensusError("Raft replica stopped")
            await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def add_member_addr(self, addr: str, *, timeout: float) -> None:
        """Add a Raft voter (pysyncobj dynamic membership). One change at a time cluster-wide."""
        await self._change_membership(addr, adding=True, timeout=timeout)

    async def remove_member_addr(self, addr: str, *, timeout: float) -> None:
        """Remove a Raft voter. The current Raft leader cannot remove itself (pysyncobj denies it)."""
        await self._change_membership(addr, adding=False, timeout=timeout)

    # ----------------------------------------------------------------- internals

    def _require(self, allow_stopped: bool = False) -> Any:
        if self._syncobj is None:
            raise ConsensusError("Raft replica not started")
        if self._stopped and not allow_stopped:
            raise ConsensusError("Raft replica stopped")
        return self._syncobj

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        self._require()
        assert self._loop is not None
        return self._loop

    def _callback(self, fut: asyncio.Future[_Reply]) -> Callable[[Any, int], None]:
        """Runs on the tick thread. It must never raise: pysyncobj would re-apply the entry."""
        loop = self._require_loop()

        def callback(result: Any, error: int) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, fut, result, error)

        return callback

    def _new_future(self) -> asyncio.Future[_Reply]:
        fut: asyncio.Future[_Reply] = self._require_loop().create_future()
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        return fut

    def _propose(self, command: dict[str, Any]) -> asyncio.Future[_Reply]:
        fut = self._new_future()
        try:
            self._machine.apply_command(command, callback=self._callback(fut))
        except KeyError:
            # pysyncobj rebuilds its method table while it loads a dump; the command was not queued.
            _settle(fut, None, _NOT_PROPOSED)
        except OSError:
            # Queued, but the wake-up pipe is full: the next tick (<= autoTickPeriod) takes it anyway.
            logger.debug("pysyncobj wake-up pipe full; command stays queued")
        return fut

    async def _submit(self, command: dict[str, Any], timeout: float) -> bool:
        loop = self._require_loop()
        op = command["op"]
        deadline = loop.time() + timeout
        backoff = _BACKOFF_FIRST
        resolve = resolver_for(command)
        reproposed = False
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if reproposed:
                    return await self._resolve(command, resolve, deadline, "leader changed")
                raise NoQuorum(f"{op}: no Raft leader accepted the command within {timeout:.1f}s")
            try:
                result, error = await asyncio.wait_for(self._propose(command), remaining)
            except TimeoutError:
                return await self._resolve(command, resolve, deadline, "timed out")
            if error == FAIL_REASON.SUCCESS:
                logger.debug("%s committed: %s", op, result)
                if not result and reproposed:
                    # An earlier attempt may have committed after all and made this one a no-op.
                    return bool(resolve(self._machine.published.state))
                return bool(result)
            if error == _STOPPED:
                raise ConsensusError(f"{op}: Raft replica stopped")
            if error in _LOST_ENTRY and op in _REPROPOSABLE:
                decided = resolve(self._machine.published.state)
                if decided is not None:
                    return decided
                logger.info("%s: the Raft leader changed before it committed; proposing it again", op)
                reproposed = True
                continue
            if error in _RETRY:
                await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            reason = {
                FAIL_REASON.LEADER_CHANGED: "leader changed",
                FAIL_REASON.DISCARDED: "entry discarded",
                FAIL_REASON.UNKNOWN_OUTCOME: "unknown outcome",
                FAIL_REASON.QUEUE_FULL: "queue full",
            }.get(error, f"error {error}")
            return await self._resolve(command, resolver_for(command), deadline, reason)

    async def _resolve(
        self, command: Mapping[str, Any], resolve: Resolver, deadline: float, reason: str
    ) -> bool:
        """Re-read the local replica until it shows whether the command took effect."""
        loop = self._require_loop()
        op = command["op"]
        while True:
            decided = resolve(self._machine.published.state)
            if decided is not None:
                logger.info("%s: %s; the local replica shows it %s", op, reason,
                            "took effect" if decided else "did not take effect")
                return decided
            if self._stopped:
                raise OutcomeUnknown(f"{op}: Raft replica stopped while the outcome was unknown")
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning("%s: %s and the local replica cannot tell whether it committed", op, reason)
                raise OutcomeUnknown(f"{op}: {reason}; outcome unknown")
            await asyncio.sleep(min(_RESOLVE_POLL, remaining))

    def _cluster_addrs(self) -> set[str]:
        return cluster_addrs(self._require(), self._self_addr)

    async def _change_membership(self, addr: str, *, adding: bool, timeout: float) -> None:
        obj = self._require()
        loop = self._require_loop()
        verb = "add" if adding else "remove"

        def resolve(_: Mapping[str, Any]) -> bool | None:
            return True if (addr in self._cluster_addrs()) == adding else None

        deadline = loop.time() + timeout
        backoff = _BACKOFF_FIRST
        denied = False
        while True:
            if resolve({}):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                if denied:
                    raise ConsensusError(f"{verb} {addr}: denied (another membership change in progress?)")
                raise NoQuorum(f"{verb} {addr}: no Raft leader accepted the change within {timeout:.1f}s")
            fut = self._new_future()
            change = obj.addNodeToCluster if adding else obj.removeNodeFromCluster
            change(addr, callback=self._callback(fut))
            try:
                _, error = await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                await self._resolve({"op": f"{verb}_member_addr"}, resolve, deadline, "timed out")
                return
            if error == FAIL_REASON.SUCCESS:
                logger.info("Raft membership: %s %s committed", verb, addr)
                return
            if error == _STOPPED:
                raise ConsensusError(f"{verb} {addr}: Raft replica stopped")
            # Any other failure (the Raft leader changed or discarded the entry, typically because the
            # member being removed was the Raft leader) is retried: a change already applied is seen by
            # resolve() above, and pysyncobj applies a repeated add or remove as a no-op.
            denied = error == FAIL_REASON.REQUEST_DENIED
            if error not in _RETRY and not denied:
                logger.info("Raft membership: %s %s not committed (error %s): proposing it again", verb, addr, error)
            await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _schedule_change(self) -> None:
        """Tick thread: ask the loop to run on_change. Notifications coalesce: on_change reads the
        newest state, so one pending call covers every change applied before it runs."""
        loop = self._loop
        if self._on_change is None or loop is None or self._change_pending:
            return
        self._change_pending = True
        try:
            loop.call_soon_threadsafe(self._deliver_change)
        except RuntimeError:
            self._change_pending = False

    def _deliver_change(self) -> None:
        self._change_pending = False
        if self._on_change is None or self._stopped:
            return
        try:
            self._on_change()
        except Exception:
            logger.exception("on_change callback failed")
