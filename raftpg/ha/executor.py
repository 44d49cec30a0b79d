"""Carrying out decide()'s actions against PostgreSQL and Raft, each bounded by a timeout."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass

from raftpg.clock import boottime
from raftpg.config import Address, DynamicConfig, Settings
from raftpg.consensus import ConsensusError, RaftNode
from raftpg.ha.actions import (
    AcquireLease,
    Action,
    Bootstrap,
    ClearFailover,
    Clone,
    Demote,
    EnsureSlots,
    Follow,
    MoveDataAside,
    Promote,
    ReleaseLease,
    RemoveMember,
    RenewLease,
    Rewind,
    SetPostgresSync,
    SetRaftSync,
    StartPrimary,
    StartStandby,
    Switchover,
)
from raftpg.ha.callbacks import CallbackEvent, CallbackRunner
from raftpg.ha.candidates import best_switchover_candidate
from raftpg.ha.lease import LeaseKeeper
from raftpg.ha.peers import fetch_peer_positions, fetch_status, peer_position_from_status
from raftpg.ha.status import NodeStatus
from raftpg.ha.sync import SyncSet, standby_names
from raftpg.ha.views import ClusterView, LocalView, PgRole
from raftpg.http.client import MemberClient
from raftpg.postgres.conf import PROMOTION_PARAMETERS, build_parameters, slot_name_for
from raftpg.postgres.datadir import DataDirState
from raftpg.postgres.errors import PostgresError
from raftpg.postgres.instance import PostgresInstance, RewindOutcome

logger = logging.getLogger(__name__)

SELF_RENEWING = (AcquireLease, RenewLease, ReleaseLease, Bootstrap, Switchover)

# Slots a replica keeps for the other members hold WAL from where it has replayed, no further back.
ADVANCE_STANDBY_SLOTS = (
    "SELECT pg_replication_slot_advance(slot_name, pg_last_wal_replay_lsn()) FROM pg_replication_slots "
    "WHERE slot_type = 'physical' AND NOT active AND restart_lsn < pg_last_wal_replay_lsn()"
)


REWIND_RETRY_INTERVAL = 30.0  # seconds before a failed pg_rewind is tried again against the same lease


@dataclass(frozen=True)
class RewindFailure:
    """A failed pg_rewind counts against the same lease (holder and version) for a while; a new
    lease, or time, earns another attempt. A source that was merely unreachable (restarting, or
    killed a moment ago and reclaiming its lease) is tried again after loop_wait."""

    source: str
    lease_version: int  # of the source's lease when it failed
    at: float  # boottime
    source_unreachable: bool
    hopeless: bool = False  # it failed on our own WAL: no retry can succeed (RewindResult.own_wal_unreadable)

    def blocks_retry(self, holder: str | None, lease_version: int, now: float, loop_wait: float,
                     ttl: float) -> bool:
        if (self.source, self.lease_version) != (holder, lease_version):
            return False
        wait = loop_wait if self.source_unreachable else max(REWIND_RETRY_INTERVAL, 3 * ttl)
        return now - self.at < wait


@dataclass(frozen=True)
class LocalRequest:
    """An operator request for this node only (restart, reload, reinitialize), from the API."""

    kind: str  # "restart" | "reload" | "reinitialize"
    role: str | None = None  # restart only if our role is this


class Executor:
    def __init__(self, settings: Settings, raft: RaftNode, pg: PostgresInstance, lease: LeaseKeeper,
                 config: Callable[[], DynamicConfig], http: MemberClient) -> None:
        self.settings = settings
        self.http = http
        self.raft = raft
        self.pg = pg
        self.lease = lease
        self._config = config
        self.upstream: str | None = None
        self.state = "stopped"
        self.rewind_failure: RewindFailure | None = None
        self.rewound = False  # pg_rewind (or its "not needed") already made us a valid standby
        self.needs_rewind = False  # a standby that could not start or stream: rewind if timelines differ
        self.rewind_not_needed_from: str | None = None  # pg_rewind found nothing to do against this holder
        self.bootstrap_failed = False
        self.requests: list[tuple[LocalRequest, asyncio.Future[str] | None]] = []
        self.sync_names: str | None = None  # synchronous_standby_names we keep in PostgreSQL (None: unknown)
        self.sync_switch_lsn: int | None = None
        self.sync_waiting_since: float | None = None  # see sync.sync_wait_since
        self.promotion_witnesses: frozenset[str] = frozenset()  # sync members we counted on to take the lease
        self.promotion_reports_needed = 0  # how many of them must stop and report (rule 5)
        self.before_demote: Callable[[], None] = lambda: None
        self.callbacks = CallbackRunner(
            {CallbackEvent(event): argv for event, argv in settings.postgresql.callbacks.items()},
            settings.scope, settings.postgresql.callback_timeout)

    # --- helpers -----------------------------------------------------------------------------
    def parameters(self) -> dict[str, str]:
        return build_parameters(self.settings.postgresql, self._config().parameters,
                                synchronous_standby_names=self.sync_names or "")

    def _block_commits_until_sync(self) -> None:
        """A primary we start or promote acknowledges nothing until its standbys are in Raft (rule 5)."""
        mode = self._config().synchronous_mode
        self.sync_names = standby_names(mode, None) if mode != "off" else ""
        self.sync_switch_lsn = None

    def _slow_timeout(self) -> float:
        """initdb, basebackup, rewind and start may take much longer than a Raft call."""
        return max(60.0, self._config().ttl * 6)

    def _upstream_address(self, cluster: ClusterView) -> Address | None:
        if self.upstream is None or self.upstream not in cluster.members:
            return None
        return self._address(cluster, self.upstream)

    def _address(self, cluster: ClusterView, member: str) -> Address:
        view = cluster.members[member]
        return Address(view.host, view.port)

    async def _start_standby(self, upstream: str | None, cluster: ClusterView) -> None:
        self.state = "starting"
        self.sync_names = ""
        address = self._address(cluster, upstream) if upstream is not None else None
        await self.pg.start(standby=True, upstream=address,
                            slot=slot_name_for(self.settings.name) if upstream else None,
                            parameters=self.parameters(), timeout=self._slow_timeout())
        self.upstream = upstream
        self.state = "running"

    async def _stop(self, mode: str) -> None:
        self.state = "stopping"
        await self.pg.stop(mode, timeout=self._slow_timeout())
        self.upstream = None
        self.state = "stopped"

    async def _arm_fence(self) -> None:
        pid = self.pg.postmaster_pid()
        if pid is None:
            raise PostgresError("no postmaster to fence: refusing to go on as primary")
        await self.lease.arm_fence(pid)

    async def _start_as_primary(self, cluster: ClusterView) -> bool:
        """Restart our own primary in place on its own timeline (rule 1).

        It starts locked — only this daemon may connect (conf.render_locked_pg_hba) — and with
        commits blocked until its standbys are in Raft (rule 5); the fence is armed on the new
        postmaster, the lease checked again, and only then is it opened to clients. So no client
        reaches a primary no fence guards, even if we die half-way. No promotion means no new
        timeline: the standbys keep streaming on the timeline they know. (The former "start as
        standby, promote" forked a timeline each time; when this node died before its standbys
        had fetched that timeline's history, the next promoted member forked the *same* timeline
        ID from an earlier point, and pg_rewind, which trusts equal timeline IDs to mean equal
        history, then read our WAL from a wrong divergence point: "record with incorrect
        prev-link", on every retry.)
        """
        config = self._config()
        if not self.lease.holds(boottime()):
            logger.error("not starting as primary: our lease deadline has passed")
            return False
        self.state = "starting"
        self._block_commits_until_sync()
        self.rewound = False  # from here on the data directory is a primary's: never skip pg_rewind
        self.rewind_not_needed_from = None
        try:
            # Bounded by primary_start_timeout: a server that cannot recover must not hold the lease.
            await self.pg.start(standby=False, upstream=None, slot=None, parameters=self.parameters(),
                                timeout=max(5.0, config.ttl, config.start_timeout), locked=True)
            self.upstream = None
            self.needs_rewind = False
            self.state = "running"
            await self._arm_fence()
            fenced_in_time = self.lease.holds(boottime())
        except (TimeoutError, PostgresError, OSError, RuntimeError):
            # Never leave an unfenced primary behind (a start that timed out leaves it recovering).
            await self._stop_unfenced_primary()
            raise
        if not fenced_in_time:
            logger.error("stopping the primary we started: our lease deadline passed before its fence was armed")
            await self._stop_unfenced_primary()
            return False
        await self.pg.reload(parameters=self.parameters(), timeout=config.retry_timeout)
        logger.info("PostgreSQL runs as primary again on its own timeline (started locked, fenced, opened)")
        return True

    async def _stop_unfenced_primary(self) -> None:
        self.before_demote()
        if self.pg.postmaster_pid() is not None:
            await self._stop("immediate")
        await self.lease.disarm_fence()

    async def _fence_and_promote(self, config: DynamicConfig) -> bool:
        """Promote the running standby: a fence guards it before it accepts a write (rule 1), it
        acknowledges nothing until its synchronous standbys are in Raft (rule 5), and the lease is
        still ours once the fence is armed (starting or stopping others may have taken long)."""
        await self._arm_fence()
        if not self.lease.holds(boottime()):
            logger.error("not promoting: our lease deadline has passed meanwhile")
            return False
        self._block_commits_until_sync()
        self.rewound = False  # from here on the data directory may be a primary's: never skip pg_rewind
        self.rewind_not_needed_from = None
        await self.pg.reload(parameters={**self.parameters(), **PROMOTION_PARAMETERS}, timeout=config.retry_timeout)
        await self.pg.promote(timeout=self._slow_timeout())
        self.upstream = None
        self.needs_rewind = False
        await self.pg.reload(parameters=self.parameters(), timeout=config.retry_timeout)
        return True

    # --- actions -----------------------------------------------------------------------------
    async def carry_out(self, action: Action, local: LocalView, cluster: ClusterView) -> tuple[bool, bool]:
        """Returns (succeeded, run the next cycle at once): after the lease or PostgreSQL's role
        changed, the follow-up steps (a new primary's synchronous set) should not wait loop_wait."""
        logger.debug("carrying out %s", action)
        try:
            if self.lease.holds(boottime()) and not isinstance(action, SELF_RENEWING):
                # A promotion or a restart can outlast the lease: keep renewing meanwhile, or the
                # fence would stop PostgreSQL half-way through.
                config = self._config()
                async with self.lease.kept_alive(config.loop_wait, config.retry_timeout):
                    return await self._dispatch(action, local, cluster)
            return await self._dispatch(action, local, cluster)
        except (TimeoutError, PostgresError, ConsensusError, OSError) as exc:
            logger.error("%s failed: %s", type(action).__name__, exc)
            if isinstance(action, StartStandby):
                self.needs_rewind = True
            if self.state in ("starting", "stopping"):
                self.state = "stopped"
            return False, False

    async def _dispatch(self, action: Action, local: LocalView, cluster: ClusterView) -> tuple[bool, bool]:
        config = self._config()
        match action:
            case AcquireLease():
                ok = await self.lease.acquire(action.expected_version, action.expected_revision, config.ttl,
                                              bootstrapping=action.bootstrapping, timeout=config.retry_timeout)
                if not ok:
                    logger.info("lease compare-and-set lost (version %s changed): not taking over",
                                action.expected_version)
                elif local.role is PgRole.PRIMARY:
                    await self._arm_fence()
                else:
                    sync = cluster.sync
                    guarded = sync.quorum > 0 and bool(sync.members)
                    self.promotion_witnesses = sync.members - {self.settings.name} if guarded else frozenset()
                    # n - quorum + 1 known members, ourselves included (candidates.py).
                    self.promotion_reports_needed = max(0, len(sync.members) - sync.quorum) if guarded else 0
                return ok, True
            case RenewLease():
                first = local.lease_deadline is None
                ok = await self.lease.renew(config.ttl, clear_bootstrapping=action.clear_bootstrapping,
                                            timeout=config.retry_timeout)
                if ok and local.role is PgRole.PRIMARY and first:
                    await self._arm_fence()
                return ok, first and ok
            case ReleaseLease():
                if local.role in (PgRole.PRIMARY, PgRole.UNKNOWN):
                    self.before_demote()
                    await self._stop("immediate")
                    self.callbacks.fire(CallbackEvent.ON_STOP, local.role.value)
                await self.lease.disarm_fence()
                return await self.lease.release(timeout=config.retry_timeout), True
            case Bootstrap():
                ok = await self._bootstrap(action, config)
                if ok:
                    self.callbacks.fire(CallbackEvent.ON_START, PgRole.PRIMARY.value)
                return ok, True
            case Clone():
                return await self._clone(action, cluster), False
            case StartPrimary():
                ok = await self._start_as_primary(cluster)
                if ok:
                    self.callbacks.fire(CallbackEvent.ON_START, PgRole.PRIMARY.value)
                return ok, ok
            case StartStandby():
                await self._start_standby(action.upstream, cluster)
                self.callbacks.fire(CallbackEvent.ON_START, PgRole.REPLICA.value)
                return True, False
            case Promote():
                ok = await self._promote(action, local, cluster, config)
                if ok:
                    self.callbacks.fire(CallbackEvent.ON_ROLE_CHANGE, PgRole.PRIMARY.value)
                return ok, ok
            case Demote():
                self.needs_rewind = self.needs_rewind or action.then_rewind
                self.before_demote()
                await self._stop("immediate" if action.immediate else "fast")
                await self.lease.disarm_fence()
                self.callbacks.fire(CallbackEvent.ON_ROLE_CHANGE, PgRole.REPLICA.value)
                return True, True
            case Follow():
                await self.pg.follow(self._address(cluster, action.upstream), slot_name_for(self.settings.name),
                                     self.parameters(), timeout=config.retry_timeout)
                self.upstream = action.upstream
                return True, False
            case Rewind():
                return await self._rewind(action, cluster), False
            case MoveDataAside():
                moved = self.pg.move_data_dir_aside()
                logger.warning("moved the data directory aside to %s (nothing was deleted)", moved)
                self.rewind_failure = None
                self.bootstrap_failed = False
                return True, False
            case EnsureSlots():
                await self.pg.ensure_slots(action.members | action.permanent, timeout=config.retry_timeout,
                                           keep=action.permanent)
                if local.role is PgRole.REPLICA:
                    await self.pg.execute(ADVANCE_STANDBY_SLOTS, timeout=config.retry_timeout)
                return True, False
            case RemoveMember():
                logger.warning("%s", action.reason)
                await self.raft.remove_member(action.name, timeout=config.retry_timeout)
                return True, False
            case SetRaftSync():
                record = {"leader": self.settings.name, "members": sorted(action.members), "quorum": action.quorum}
                version = self.raft.snapshot().lease.version
                ok = await self.raft.set_sync(self.settings.name, self.lease.instance_id, version, record,
                                              timeout=config.retry_timeout)
                logger.info("%s: %s", action.reason, "published" if ok else "refused (no longer the holder)")
                return ok, ok
            case SetPostgresSync():
                await self._set_postgres_sync(action, config)
                return True, True
            case Switchover():
                ok = await self._switchover(action.candidate, action.request_id, cluster, config)
                if ok:
                    self.callbacks.fire(CallbackEvent.ON_ROLE_CHANGE, PgRole.REPLICA.value)
                return ok, True
            case ClearFailover():
                return await self.raft.clear_failover(action.request_id, reason=action.reason,
                                                      timeout=config.retry_timeout), False
        raise AssertionError(f"no executor for {action!r}")

    async def _set_postgres_sync(self, action: SetPostgresSync, config: DynamicConfig) -> None:
        sync = None if action.members is None else SyncSet(action.members, action.quorum)
        names = standby_names(config.synchronous_mode, sync)
        self.sync_names = names
        await self.pg.reload(parameters=self.parameters(), timeout=config.retry_timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.retry_timeout
        while True:
            rows = await self.pg.execute("SELECT current_setting('synchronous_standby_names'), "
                                         "pg_current_wal_lsn() - '0/0'::pg_lsn", timeout=config.retry_timeout)
            if rows and rows[0][0] == names:
                self.sync_switch_lsn = int(rows[0][1])
                break
            if loop.time() > deadline:
                raise PostgresError("synchronous_standby_names did not take effect after reload")
            await asyncio.sleep(0.02)
        logger.info("%s: synchronous_standby_names = '%s' from LSN %s", action.reason, names,
                    self.sync_switch_lsn)
        if action.members:
            await self._nudge_sync_standbys(action.members, config)

    async def _nudge_sync_standbys(self, members: Collection[str], config: DynamicConfig) -> None:
        """Release commits that waited for a synchronous standby now, not on its next status reply
        (wal_receiver_status_interval later): once a named standby's walsender counts it as
        synchronous, commit one transaction of our own; the standby replies on flushing it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.retry_timeout / 2
        while loop.time() < deadline:
            rows = await self.pg.execute("SELECT count(*) FROM pg_stat_replication WHERE application_name = ANY(%s) "
                                         "AND sync_state IN ('sync', 'quorum', 'potential')", (sorted(members),),
                                         timeout=config.retry_timeout)
            if rows and rows[0][0] > 0:
                await self.pg.execute("SELECT txid_current()", timeout=config.retry_timeout)
                return
            await asyncio.sleep(0.02)

    async def _bootstrap(self, action: Bootstrap, config: DynamicConfig) -> bool:
        async with self.lease.kept_alive(config.loop_wait, config.retry_timeout):
            try:
                if not action.existing_data:
                    self.state = "initializing new cluster"
                    await self.pg.initdb(self.settings.bootstrap.initdb, timeout=self._slow_timeout())
                self.state = "starting"
                self.sync_names = ""  # no standby exists yet; the roles below must commit
                await self.pg.start(standby=False, upstream=None, slot=None, parameters=self.parameters(),
                                    timeout=self._slow_timeout())
                await self._arm_fence()
                await self.pg.bootstrap_roles(timeout=config.retry_timeout)
                control_sysid = (await self.pg.status(timeout=config.retry_timeout)).system_identifier
                if control_sysid is None:
                    raise RuntimeError("could not read the new cluster's system identifier")
                snap = self.raft.snapshot()
                if not snap.config:
                    await self.raft.set_config(self.settings.bootstrap.dcs.to_dict(), snap.config_version,
                                               timeout=config.retry_timeout)
                version = self.raft.snapshot().lease.version
                ok = await self.raft.initialize(self.settings.name, self.lease.instance_id, version,
                                                str(control_sysid), timeout=config.retry_timeout)
                if not ok:
                    raise RuntimeError("the initialize command was refused: we lost the bootstrap claim")
                self.state = "running"
                logger.info("bootstrapped cluster %s with system identifier %s", self.settings.scope,
                            control_sysid)
                return True
            except (TimeoutError, PostgresError, ConsensusError, RuntimeError, OSError) as exc:
                logger.error("bootstrap failed: %s; stopping and giving the claim back", exc)
                self.bootstrap_failed = True
                if self.pg.postmaster_pid() is not None:
                    await self._stop("immediate")
                await self.lease.disarm_fence()
                await self.lease.release(timeout=config.retry_timeout)
                return False

    async def _clone(self, action: Clone, cluster: ClusterView) -> bool:
        self.state = "creating replica"
        try:
            await self.pg.basebackup(self._address(cluster, action.source), timeout=self._slow_timeout(),
                                     slot=None)
        except PostgresError as exc:
            logger.error("basebackup from %s failed: %s", action.source, exc)
            if self.pg.data_dir_state() is DataDirState.INVALID:
                self.pg.move_data_dir_aside()
            self.state = "stopped"
            return False
        self.state = "stopped"
        return True

    async def _rewind(self, action: Rewind, cluster: ClusterView) -> bool:
        self.state = "rewinding"
        result = await self.pg.rewind(self._address(cluster, action.source), timeout=self._slow_timeout())
        self.state = "stopped"
        if not result.ok:
            logger.error("pg_rewind from %s failed: %s", action.source, result.output[-2000:])
            self.rewind_failure = RewindFailure(action.source, cluster.lease.version, boottime(),
                                                result.source_unreachable, result.own_wal_unreadable)
            if result.own_wal_unreadable:
                logger.warning("pg_rewind cannot succeed on this member's WAL; unless it re-clones on its own "
                               "(on/quorum mode), fix it with: raftpg ctl reinit %s %s", self.settings.scope,
                               self.settings.name)
            return False
        logger.info("pg_rewind from %s: %s", action.source, result.outcome.value)
        self.rewind_failure = None
        self.rewound = True
        self.needs_rewind = False
        self.rewind_not_needed_from = action.source if result.outcome is RewindOutcome.NOT_NEEDED else None
        return True

    async def _stop_and_report(self, cluster: ClusterView, own_lsn: int, timeout: float) -> str | None:
        """Rule 5: the synchronous members we counted on stop streaming from the old primary (they
        follow us as soon as they see our lease) and report how far they got; a frozen old primary
        can then no longer collect acknowledgements, and none of them may be ahead of us."""
        witnesses = [cluster.members[n] for n in sorted(self.promotion_witnesses) if n in cluster.members]
        needed = self.promotion_reports_needed
        self.promotion_witnesses = frozenset()
        self.promotion_reports_needed = 0
        if not witnesses or needed == 0:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {m.name: m for m in witnesses}
        while pending and loop.time() < deadline:
            for name, member in list(pending.items()):
                body = await fetch_status(self.http, member, timeout=1.0)
                if body is None:
                    continue
                upstream = (body.get("raftpg") or {}).get("upstream")
                position = peer_position_from_status(name, body)
                if position.lsn is not None and position.lsn > own_lsn:
                    return f"synchronous member {name} is ahead of us ({position.lsn} > {own_lsn})"
                if upstream in (None, self.settings.name) or position.role != "replica":
                    del pending[name]
            if pending:
                await asyncio.sleep(0.05)
        reported = len(witnesses) - len(pending)
        if reported < needed:
            return (f"only {reported} of the {needed} synchronous members we counted on stopped streaming "
                    f"from the old primary and reported (no answer from {sorted(pending)})")
        if pending:
            logger.warning("promoting with reports from %s of the %s needed; no answer from %s", reported, needed,
                           sorted(pending))
        return None

    async def _promote(self, action: Promote, local: LocalView, cluster: ClusterView,
                       config: DynamicConfig) -> bool:
        if not self.lease.holds(boottime()):
            logger.error("not promoting: our lease deadline has passed meanwhile")
            return False
        problem = await self._stop_and_report(cluster, local.lsn or 0, timeout=config.retry_timeout)
        if problem is not None:
            logger.error("not promoting: %s; releasing the lease", problem)
            await self.lease.release(timeout=config.retry_timeout)
            return False
        if not await self._fence_and_promote(config):
            return False
        entry = {"request_id": uuid.uuid4().hex, "timeline": local.timeline, "lsn": local.replay_lsn,
                 "reason": action.reason, "time": time.time(), "leader": self.settings.name}
        version = self.raft.snapshot().lease.version
        try:
            await self.raft.append_history(self.settings.name, self.lease.instance_id, version, entry,
                                           timeout=config.retry_timeout)
        except ConsensusError as exc:
            logger.warning("could not record the promotion in the history: %s", exc)
        logger.info("promoted: now primary (was timeline %s)", local.timeline)
        return True

    async def _switchover(self, candidate: str, request_id: str, cluster: ClusterView,
                          config: DynamicConfig) -> bool:
        """DESIGN rule 4: stop, check the candidate has our shutdown checkpoint, hand over."""
        target = cluster.members[candidate]
        async with self.lease.kept_alive(config.loop_wait, config.retry_timeout):
            self.before_demote()
            logger.info("switchover to %s: stopping PostgreSQL (fast)", candidate)
            await self._stop("fast")
            control = await self.pg.controldata(timeout=config.retry_timeout)
            if control.cluster_state != "shut down":
                reason = (f"switchover to {candidate} aborted: PostgreSQL did not shut down cleanly "
                          f"({control.cluster_state}), so its last checkpoint is not the end of its WAL")
                logger.error("%s", reason)
                await self.raft.clear_failover(request_id, reason=reason, timeout=config.retry_timeout)
                return False
            lsn = control.checkpoint_lsn
            caught_up = await self._wait_received(target.name, cluster, lsn, timeout=max(5.0, config.ttl))
            if not caught_up:
                reason = (f"switchover to {candidate} aborted: it did not receive our shutdown checkpoint "
                          f"{lsn}; restarting as primary")
                logger.error("%s", reason)
                await self.raft.clear_failover(request_id, reason=reason, timeout=config.retry_timeout)
                await self._start_as_primary(cluster)
                return False
            version = self.raft.snapshot().lease.version
            ok = await self.raft.handover_lease(self.settings.name, self.lease.instance_id, version, candidate,
                                                target.instance_id, lsn, timeout=config.retry_timeout)
        if ok:
            self.lease.forget()
            await self.lease.disarm_fence()
            await self.raft.clear_failover(request_id, timeout=config.retry_timeout)
            logger.info("switchover: lease handed to %s at LSN %s", candidate, lsn)
        return ok

    async def _wait_received(self, candidate: str, cluster: ClusterView, lsn: int, timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        member = cluster.members[candidate]
        while asyncio.get_running_loop().time() < deadline:
            positions = await fetch_peer_positions(self.http, [member], timeout=1.0)
            position = positions[candidate]
            if position.reachable and position.lsn is not None and position.lsn >= lsn:
                return True
            await asyncio.sleep(0.05)
        return False

    async def serve_requests(self, local: LocalView, cluster: ClusterView) -> None:
        while self.requests:
            request, done = self.requests.pop(0)
            message = await self._serve(request, local, cluster)
            if done is not None and not done.done():
                done.set_result(message)

    async def _serve(self, request: LocalRequest, local: LocalView, cluster: ClusterView) -> str:
        config = self._config()
        try:
            if request.kind == "reload":
                await self.pg.reload(parameters=self.parameters(), upstream=self._upstream_address(cluster),
                                     slot=slot_name_for(self.settings.name) if self.upstream else None,
                                     timeout=config.retry_timeout)
                self.callbacks.fire(CallbackEvent.ON_RELOAD, local.role.value)
            elif request.kind == "restart":
                if request.role is not None and local.role.value != request.role:
                    return f"not restarted: role is {local.role.value}"
                if local.role is PgRole.PRIMARY and self.lease.holds(local.now):
                    async with self.lease.kept_alive(config.loop_wait, config.retry_timeout):
                        await self._stop("fast")
                        if not await self._start_as_primary(cluster):
                            return "restart: PostgreSQL stopped; the lease was lost meanwhile"
                    self.callbacks.fire(CallbackEvent.ON_RESTART, PgRole.PRIMARY.value)
                elif local.role is PgRole.REPLICA:
                    upstream = self.upstream
                    await self._stop("fast")
                    await self._start_standby(upstream, cluster)
                    self.callbacks.fire(CallbackEvent.ON_RESTART, PgRole.REPLICA.value)
            elif request.kind == "reinitialize" and local.role is not PgRole.PRIMARY:
                if self.pg.postmaster_pid() is not None:
                    await self._stop("immediate")
                moved = self.pg.move_data_dir_aside()
                self.rewind_failure = None
                logger.warning("reinitialize: moved the data directory aside to %s; re-cloning", moved)
        except (TimeoutError, PostgresError, OSError) as exc:
            logger.error("%s failed: %s", request.kind, exc)
            return f"{request.kind} failed: {exc}"
        return f"{request.kind} done"

    async def shutdown(self, status: NodeStatus, cluster: ClusterView, timeout: float,
                       before_demote: Callable[[], None]) -> None:
        """Clean stop: a primary hands over (rule 4) or stops and releases; a replica just stops.

        Paused, PostgreSQL is left running and the lease as it is (rolling upgrades); the fence
        stays armed, so a primary whose raftpg does not come back in time is still stopped."""
        config = self._config()
        if config.pause:
            logger.info("paused: leaving PostgreSQL running and the lease as it is")
            return
        local_name = self.settings.name
        holds = self.lease.holds(boottime()) and status.role == "primary"
        if holds:
            fake_local = _shutdown_local(status, local_name, self.lease.instance_id)
            candidate = best_switchover_candidate(cluster, fake_local, None)
            handed = False
            if candidate is not None:
                try:
                    handed = await asyncio.wait_for(
                        self._switchover(candidate, "shutdown", cluster, config), timeout=timeout)
                except (TimeoutError, PostgresError, ConsensusError, OSError) as exc:
                    logger.error("hand-over on shutdown failed: %s", exc)
            if handed:
                self.callbacks.fire(CallbackEvent.ON_STOP, PgRole.PRIMARY.value)
            else:
                before_demote()
                if self.pg.postmaster_pid() is not None:
                    await self._stop("fast")
                    self.callbacks.fire(CallbackEvent.ON_STOP, PgRole.PRIMARY.value)
                await self.lease.disarm_fence()
                try:
                    await self.lease.release(timeout=config.retry_timeout)
                except ConsensusError as exc:
                    logger.warning("could not release the lease on shutdown: %s", exc)
        elif self.pg.postmaster_pid() is not None:
            await self._stop("fast")
            self.callbacks.fire(CallbackEvent.ON_STOP, status.role)
        await self.lease.disarm_fence()
        await self.callbacks.close()


def _shutdown_local(status: NodeStatus, name: str, instance_id: str) -> LocalView:
    """Enough of a local view to pick the best hand-over candidate."""
    return LocalView(name=name, instance_id=instance_id, now=0.0, wall_now=time.time(), tags=status.tags,
                     data_dir=DataDirState.INITIALIZED, role=PgRole.PRIMARY)
