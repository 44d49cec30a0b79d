"""Carrying out the core's actions against PostgreSQL and Raft, each bounded by a timeout.

The executor decides nothing: it performs, and reports each outcome to the core as it happens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from raftpg.config import Address, DynamicConfig
from raftpg.consensus import ConsensusError
from raftpg.ha.actions import (
    AcquireLease,
    Action,
    Bootstrap,
    ClearFailover,
    Clone,
    Demote,
    EnsureSlots,
    Follow,
    Idle,
    MoveDataAside,
    Promote,
    Reinitialize,
    ReleaseLease,
    ReloadPostgres,
    RemoveMember,
    RenewLease,
    RestartPostgres,
    Rewind,
    SetPostgresSync,
    SetRaftSync,
    StartPrimary,
    StartStandby,
    StopPostgres,
    Switchover,
)
from raftpg.ha.callbacks import CallbackEvent
from raftpg.ha.memory import PgState
from raftpg.ha.observations import (
    ActionFailed,
    Busy,
    CloneFinished,
    DataMovedAside,
    DemoteStarted,
    Followed,
    HandOverFailed,
    LeaseAcquired,
    Reinitialized,
    RewindFinished,
    SyncApplied,
    SyncRequested,
)
from raftpg.ha.transitions import Transitions
from raftpg.ha.views import ClusterView, LocalView, PgRole
from raftpg.poll import async_wait_until
from raftpg.postgres.conf import slot_name_for
from raftpg.postgres.datadir import DataDirState
from raftpg.postgres.errors import PostgresError

logger = logging.getLogger(__name__)

SELF_RENEWING = (AcquireLease, RenewLease, ReleaseLease, Bootstrap, Switchover)

SYNC_POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class LocalRequest:
    """An operator request for this node only ("restart", "reload", "reinitialize"), from the API."""

    kind: str


@dataclass(frozen=True)
class ActionResult:
    succeeded: bool
    cycle_now: bool  # the lease or PostgreSQL's role changed: the follow-up steps should not wait loop_wait


FAILED = ActionResult(False, False)


class Executor(Transitions):
    def _upstream_address(self, cluster: ClusterView) -> Address | None:
        upstream = self.memory().upstream
        if upstream is None or upstream not in cluster.members:
            return None
        return self._address(cluster, upstream)

    async def carry_out(self, action: Action, local: LocalView, cluster: ClusterView) -> ActionResult:
        logger.debug("carrying out %s", action)
        try:
            if self.lease.held() and not isinstance(action, SELF_RENEWING):
                # A promotion or a restart can outlast the lease: keep renewing meanwhile, or the
                # fence would stop PostgreSQL half-way through.
                config = cluster.config
                async with self.lease.kept_alive(config.loop_wait, config.retry_timeout):
                    return await self._dispatch(action, local, cluster)
            return await self._dispatch(action, local, cluster)
        except (TimeoutError, PostgresError, ConsensusError, OSError) as exc:
            logger.error("%s failed: %s", type(action).__name__, exc)
            self.report(ActionFailed(action))
            return FAILED

    async def _dispatch(self, action: Action, local: LocalView, cluster: ClusterView) -> ActionResult:
        config = cluster.config
        match action:
            case AcquireLease():
                ok = await self.lease.acquire(action.expected_version, action.expected_revision, config.ttl,
                                              bootstrapping=action.bootstrapping, timeout=config.retry_timeout)
                if not ok:
                    logger.info("lease compare-and-set lost (version %s changed): not taking over",
                                action.expected_version)
                    return ActionResult(False, True)
                primary = local.role is PgRole.PRIMARY
                self.report(LeaseAcquired(self.settings.name, primary, cluster.sync))
                if primary:
                    await self._arm_fence()
                return ActionResult(True, True)
            case RenewLease():
                first = local.lease_deadline is None
                ok = await self.lease.renew(config.ttl, clear_bootstrapping=action.clear_bootstrapping,
                                            timeout=config.retry_timeout)
                if ok and local.role is PgRole.PRIMARY and first:
                    await self._arm_fence()
                return ActionResult(ok, first and ok)
            case ReleaseLease():
                if local.role in (PgRole.PRIMARY, PgRole.UNKNOWN):
                    self.before_demote()
                    await self._stop("immediate", config)
                    self.callbacks.fire(CallbackEvent.ON_STOP, local.role.value)
                await self.lease.disarm_fence()
                return ActionResult(await self.lease.release(timeout=config.retry_timeout), True)
            case Bootstrap():
                ok = await self._bootstrap(action, cluster)
                if ok:
                    self.callbacks.fire(CallbackEvent.ON_START, PgRole.PRIMARY.value)
                return ActionResult(ok, True)
            case Clone():
                return ActionResult(await self._clone(action, cluster), False)
            case StartPrimary():
                ok = await self._start_as_primary(cluster)
                if ok:
                    self.callbacks.fire(CallbackEvent.ON_START, PgRole.PRIMARY.value)
                return ActionResult(ok, ok)
            case StartStandby():
                await self._start_standby(action.upstream, cluster, action.ready_within)
                self.callbacks.fire(CallbackEvent.ON_START, PgRole.REPLICA.value)
                return ActionResult(True, False)
            case Promote():
                ok = await self._promote(action, local, cluster)
                if ok:
                    self.callbacks.fire(CallbackEvent.ON_ROLE_CHANGE, PgRole.PRIMARY.value)
                return ActionResult(ok, ok)
            case Demote():
                self.report(DemoteStarted(action.then_rewind))
                self.before_demote()
                await self._stop("immediate" if action.immediate else "fast", config)
                await self.lease.disarm_fence()
                self.callbacks.fire(CallbackEvent.ON_ROLE_CHANGE, PgRole.REPLICA.value)
                return ActionResult(True, True)
            case Follow():
                await self.pg.follow(self._address(cluster, action.upstream), slot_name_for(self.settings.name),
                                     self.parameters(config), timeout=config.retry_timeout)
                self.report(Followed(action.upstream))
                return ActionResult(True, False)
            case Rewind():
                return ActionResult(await self._rewind(action, cluster), False)
            case MoveDataAside():
                moved = self.pg.move_data_dir_aside()
                logger.warning("moved the data directory aside to %s (nothing was deleted)", moved)
                self.report(DataMovedAside())
                return ActionResult(True, False)
            case EnsureSlots():
                await self.pg.ensure_slots(action.members | action.permanent, timeout=config.retry_timeout,
                                           keep=action.permanent, advance=local.role is PgRole.REPLICA)
                return ActionResult(True, False)
            case RemoveMember():
                logger.warning("%s", action.reason)
                await self.raft.remove_member(action.name, timeout=config.retry_timeout)
                return ActionResult(True, False)
            case SetRaftSync():
                record = {"leader": self.settings.name, "members": sorted(action.members), "quorum": action.quorum}
                version = self.raft.snapshot().lease.version
                ok = await self.raft.set_sync(self.settings.name, self.lease.instance_id, version, record,
                                              timeout=config.retry_timeout)
                logger.info("%s: %s", action.reason, "published" if ok else "refused (no longer the holder)")
                return ActionResult(ok, ok)
            case SetPostgresSync():
                await self._set_postgres_sync(action, config)
                return ActionResult(True, True)
            case Switchover():
                ok = await self._switchover(action.candidate, action.request_id, cluster)
                if ok:
                    self.callbacks.fire(CallbackEvent.ON_ROLE_CHANGE, PgRole.REPLICA.value)
                return ActionResult(ok, True)
            case ClearFailover():
                return ActionResult(await self.raft.clear_failover(action.request_id, reason=action.reason,
                                                                   timeout=config.retry_timeout), False)
        raise AssertionError(f"no executor for {action!r}")

    async def _set_postgres_sync(self, action: SetPostgresSync, config: DynamicConfig) -> None:
        self.report(SyncRequested(config.synchronous_mode, action.members, action.quorum))
        names = self.memory().sync_names
        await self.pg.reload(parameters=self.parameters(config), timeout=config.retry_timeout)
        switched: list[int] = []

        async def took_effect() -> bool:
            rows = await self.pg.execute("SELECT current_setting('synchronous_standby_names'), "
                                         "pg_current_wal_lsn() - '0/0'::pg_lsn", timeout=config.retry_timeout)
            if rows and rows[0][0] == names:
                switched.append(int(rows[0][1]))
            return bool(switched)

        if not await async_wait_until(took_effect, config.retry_timeout, SYNC_POLL_INTERVAL):
            raise PostgresError("synchronous_standby_names did not take effect after reload")
        switch_lsn = switched[0]
        self.report(SyncApplied(switch_lsn))
        logger.info("%s: synchronous_standby_names = '%s' from LSN %s", action.reason, names, switch_lsn)
        if action.members:
            await self._nudge_sync_standbys(action.members, config)

    async def _nudge_sync_standbys(self, members: Collection[str], config: DynamicConfig) -> None:
        """Release commits that waited for a synchronous standby now, not on its next status reply
        (wal_receiver_status_interval later): once a named standby's walsender counts it as
        synchronous, commit one transaction of our own; the standby replies on flushing it."""
        async def counted() -> bool:
            rows = await self.pg.execute("SELECT count(*) FROM pg_stat_replication WHERE application_name = ANY(%s) "
                                         "AND sync_state IN ('sync', 'quorum', 'potential')", (sorted(members),),
                                         timeout=config.retry_timeout)
            return bool(rows and rows[0][0] > 0)

        if await async_wait_until(counted, config.retry_timeout / 2, SYNC_POLL_INTERVAL):
            await self.pg.execute("SELECT txid_current()", timeout=config.retry_timeout)

    async def _clone(self, action: Clone, cluster: ClusterView) -> bool:
        self.report(Busy(PgState.CREATING_REPLICA))
        try:
            await self.pg.basebackup(self._address(cluster, action.source),
                                     timeout=self._slow_timeout(cluster.config), slot=None)
        except PostgresError as exc:
            logger.error("basebackup from %s failed: %s", action.source, exc)
            if self.pg.data_dir_state() is DataDirState.INVALID:
                self.pg.move_data_dir_aside()
            self.report(CloneFinished())
            return False
        self.report(CloneFinished())
        return True

    async def _rewind(self, action: Rewind, cluster: ClusterView) -> bool:
        self.report(Busy(PgState.REWINDING))
        result = await self.pg.rewind(self._address(cluster, action.source),
                                      timeout=self._slow_timeout(cluster.config))
        self.report(RewindFinished(action.source, cluster.lease.version, result))
        if not result.ok:
            logger.error("pg_rewind from %s failed: %s", action.source, result.output[-2000:])
            if result.own_wal_unreadable:
                logger.warning("pg_rewind cannot succeed on this member's WAL; unless it re-clones on its own "
                               "(on/quorum mode), fix it with: raftpg ctl reinit %s %s", self.settings.scope,
                               self.settings.name)
            return False
        logger.info("pg_rewind from %s: %s", action.source, result.outcome.value)
        return True

    # --- operator requests -------------------------------------------------------------------
    async def serve(self, kind: str, actions: Sequence[Action], local: LocalView, cluster: ClusterView) -> str:
        """Carry out the core's answer to an operator request; the reply says how it went."""
        config = cluster.config
        try:
            for action in actions:
                match action:
                    case ReloadPostgres():
                        upstream = self.memory().upstream
                        await self.pg.reload(parameters=self.parameters(config),
                                             upstream=self._upstream_address(cluster),
                                             slot=slot_name_for(self.settings.name) if upstream else None,
                                             timeout=config.retry_timeout)
                        self.callbacks.fire(CallbackEvent.ON_RELOAD, local.role.value)
                    case RestartPostgres(primary=True):
                        async with self.lease.kept_alive(config.loop_wait, config.retry_timeout):
                            await self._stop("fast", config)
                            if not await self._start_as_primary(cluster):
                                return "restart: PostgreSQL stopped; the lease was lost meanwhile"
                        self.callbacks.fire(CallbackEvent.ON_RESTART, PgRole.PRIMARY.value)
                    case RestartPostgres():
                        await self._stop("fast", config)
                        # ctl rolling-restart waits for it to stream; a standby that cannot
                        # become consistent must not hold the loop (StartStandby.ready_within).
                        await self._start_standby(action.upstream, cluster, config.retry_timeout)
                        self.callbacks.fire(CallbackEvent.ON_RESTART, PgRole.REPLICA.value)
                    case Reinitialize():
                        if self.pg.postmaster_pid() is not None:
                            await self._stop("immediate", config)
                        moved = self.pg.move_data_dir_aside()
                        self.report(Reinitialized())
                        logger.warning("reinitialize: moved the data directory aside to %s; re-cloning", moved)
                    case _:
                        raise AssertionError(f"not an operator action: {action!r}")
        except (TimeoutError, PostgresError, OSError) as exc:
            logger.error("%s failed: %s", kind, exc)
            return f"{kind} failed: {exc}"
        return f"{kind} done"

    # --- shutdown ----------------------------------------------------------------------------
    async def shutdown(self, actions: Sequence[Action], cluster: ClusterView, timeout: float) -> None:
        """Carry out the core's shutdown plan (core._shutdown); the fence is disarmed last, except
        when paused: then it stays armed, so a primary whose raftpg does not come back in time is
        still stopped."""
        config = cluster.config
        for action in actions:
            match action:
                case Idle():
                    logger.info("%s", action.reason)
                    return
                case Switchover():
                    handed = False
                    try:
                        handed = await asyncio.wait_for(
                            self._switchover(action.candidate, action.request_id, cluster), timeout=timeout)
                    except (TimeoutError, PostgresError, ConsensusError, OSError) as exc:
                        logger.error("hand-over on shutdown failed: %s", exc)
                    if handed:
                        self.callbacks.fire(CallbackEvent.ON_STOP, PgRole.PRIMARY.value)
                    else:
                        await self._stop_for_shutdown(self.report(HandOverFailed()), config)
                case _:
                    await self._stop_for_shutdown([action], config)
        await self.lease.disarm_fence()
        await self.callbacks.close()

    async def _stop_for_shutdown(self, actions: Sequence[Action], config: DynamicConfig) -> None:
        for action in actions:
            if not isinstance(action, StopPostgres):
                raise AssertionError(f"not a shutdown step: {action!r}")
            if action.release_lease:
                self.before_demote()
            if self.pg.postmaster_pid() is not None:
                await self._stop("fast", config)
                self.callbacks.fire(CallbackEvent.ON_STOP, action.role)
            if action.release_lease:
                await self.lease.disarm_fence()
                try:
                    await self.lease.release(timeout=config.retry_timeout)
                except ConsensusError as exc:
                    logger.warning("could not release the lease on shutdown: %s", exc)
