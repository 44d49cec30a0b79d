"""The shell's paths to and from primary (rules 1, 4 and 5): start, promote, switch over, bootstrap.

Each step is reported to the core as it happens (observations.py); where the core has a verdict
to give in the middle (stop-and-report, the switchover's checkpoint), the path asks and obeys.
The lease checks here are interlocks, read on the lease's own clock at the moment of acting.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence

from raftpg.config import Address, DynamicConfig, Settings
from raftpg.consensus import ConsensusError, RaftNode
from raftpg.ha.actions import Action, Bootstrap, ClearFailover, Promote, ReleaseLease, StartPrimary
from raftpg.ha.callbacks import CallbackEvent, CallbackRunner
from raftpg.ha.core import witness_stopped
from raftpg.ha.lease import LeaseKeeper
from raftpg.ha.memory import Memory, PgState
from raftpg.ha.observations import (
    BootstrapDone,
    BootstrapFailed,
    BootstrapStarting,
    Busy,
    CandidateCaughtUp,
    Observation,
    PrimaryStarted,
    PrimaryStarting,
    Promoted,
    PromotionStarting,
    StandbyStarted,
    StandbyStarting,
    StopAndReportResult,
    Stopped,
    Stopping,
    SwitchoverStopped,
    WitnessReport,
)
from raftpg.ha.peers import fetch_peer_positions, fetch_status, peer_position_from_status
from raftpg.ha.views import ClusterView, LocalView
from raftpg.http.client import MemberClient
from raftpg.poll import async_wait_until
from raftpg.postgres.conf import PROMOTION_PARAMETERS, build_parameters, slot_name_for
from raftpg.postgres.errors import PostgresError
from raftpg.postgres.instance import PostgresInstance, Started

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.05  # seconds between questions to a member while waiting for it


class Transitions:
    def __init__(self, settings: Settings, raft: RaftNode, pg: PostgresInstance, lease: LeaseKeeper,
                 http: MemberClient, memory: Callable[[], Memory],
                 report: Callable[[Observation], list[Action]]) -> None:
        self.settings = settings
        self.http = http
        self.raft = raft
        self.pg = pg
        self.lease = lease
        self.memory = memory
        self.report = report
        self.before_demote: Callable[[], None] = lambda: None
        self.callbacks = CallbackRunner(
            {CallbackEvent(event): argv for event, argv in settings.postgresql.callbacks.items()},
            settings.scope, settings.postgresql.callback_timeout)

    # --- helpers -----------------------------------------------------------------------------
    def parameters(self, config: DynamicConfig) -> dict[str, str]:
        return build_parameters(self.settings.postgresql, config.parameters,
                                synchronous_standby_names=self.memory().sync_names or "")

    @staticmethod
    def _slow_timeout(config: DynamicConfig) -> float:
        """initdb, basebackup, rewind and start may take much longer than a Raft call."""
        return max(60.0, config.ttl * 6)

    @staticmethod
    def _address(cluster: ClusterView, member: str) -> Address:
        view = cluster.members[member]
        return Address(view.host, view.port)

    async def _start_standby(self, upstream: str | None, cluster: ClusterView, ready_within: float) -> None:
        """A standby that is not consistent after ready_within is left recovering, and reported so."""
        self.report(StandbyStarting())
        address = self._address(cluster, upstream) if upstream is not None else None
        started = await self.pg.start(standby=True, upstream=address,
                                      slot=slot_name_for(self.settings.name) if upstream else None,
                                      parameters=self.parameters(cluster.config),
                                      timeout=self._slow_timeout(cluster.config), ready_within=ready_within)
        self.report(StandbyStarted(upstream, recovering=started is Started.RECOVERING))

    async def _stop(self, mode: str, config: DynamicConfig) -> None:
        self.report(Stopping())
        await self.pg.stop(mode, timeout=self._slow_timeout(config))
        self.report(Stopped())

    async def _arm_fence(self) -> None:
        pid = self.pg.postmaster_pid()
        if pid is None:
            raise PostgresError("no postmaster to fence: refusing to go on as primary")
        await self.lease.arm_fence(pid)

    async def _abandon(self, replacement: Sequence[Action], config: DynamicConfig, cluster: ClusterView) -> bool:
        """Carry out the core's replacement for the rest of an action (core.py); the action failed."""
        for action in replacement:
            logger.error("%s", action.reason)
            match action:
                case ClearFailover():
                    await self.raft.clear_failover(action.request_id, reason=action.reason,
                                                   timeout=config.retry_timeout)
                case StartPrimary():
                    await self._start_as_primary(cluster)
                case ReleaseLease():
                    await self.lease.release(timeout=config.retry_timeout)
                case _:
                    raise AssertionError(f"no replacement step {action!r}")
        return False

    # --- primary -----------------------------------------------------------------------------
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
        config = cluster.config
        if not self.lease.held():
            logger.error("not starting as primary: our lease deadline has passed")
            return False
        self.report(PrimaryStarting(config.synchronous_mode))
        try:
            # Bounded by primary_start_timeout: a server that cannot recover must not hold the lease.
            await self.pg.start(standby=False, upstream=None, slot=None, parameters=self.parameters(config),
                                timeout=max(5.0, config.ttl, config.start_timeout), locked=True)
            self.report(PrimaryStarted())
            await self._arm_fence()
            fenced_in_time = self.lease.held()
        except (TimeoutError, PostgresError, OSError, RuntimeError):
            # Never leave an unfenced primary behind (a start that timed out leaves it recovering).
            await self._stop_unfenced_primary(config)
            raise
        if not fenced_in_time:
            logger.error("stopping the primary we started: our lease deadline passed before its fence was armed")
            await self._stop_unfenced_primary(config)
            return False
        await self.pg.reload(parameters=self.parameters(config), timeout=config.retry_timeout)
        logger.info("PostgreSQL runs as primary again on its own timeline (started locked, fenced, opened)")
        return True

    async def _stop_unfenced_primary(self, config: DynamicConfig) -> None:
        self.before_demote()
        if self.pg.postmaster_pid() is not None:
            await self._stop("immediate", config)
        await self.lease.disarm_fence()

    async def _fence_and_promote(self, config: DynamicConfig) -> bool:
        """Promote the running standby: a fence guards it before it accepts a write (rule 1), it
        acknowledges nothing until its synchronous standbys are in Raft (rule 5), and the lease is
        still ours once the fence is armed (starting or stopping others may have taken long)."""
        await self._arm_fence()
        if not self.lease.held():
            logger.error("not promoting: our lease deadline has passed meanwhile")
            return False
        self.report(PromotionStarting(config.synchronous_mode))
        await self.pg.reload(parameters={**self.parameters(config), **PROMOTION_PARAMETERS},
                             timeout=config.retry_timeout)
        await self.pg.promote(timeout=self._slow_timeout(config))
        self.report(Promoted())
        await self.pg.reload(parameters=self.parameters(config), timeout=config.retry_timeout)
        return True

    async def _stop_and_report(self, action: Promote, cluster: ClusterView, own_lsn: int,
                               timeout: float) -> StopAndReportResult:
        """Rule 5: ask the synchronous members we counted on (they follow us as soon as they see
        our lease) until each has stopped streaming from the old primary, one is ahead of us, or
        time is up; the core judges the answers."""
        name = self.settings.name
        reports: dict[str, WitnessReport] = {}
        pending = {n: cluster.members[n] for n in sorted(action.witnesses)} if action.reports_needed else {}

        async def settled() -> bool:
            """One round of questions: done when every witness stopped, or one is ahead of us."""
            for member_name, member in list(pending.items()):
                body = await fetch_status(self.http, member, timeout=1.0)
                if body is None:
                    continue
                position = peer_position_from_status(member_name, body)
                report = WitnessReport(member_name, position.lsn, (body.get("raftpg") or {}).get("upstream"),
                                       position.role)
                reports[member_name] = report
                if report.lsn is not None and report.lsn > own_lsn:
                    return True
                if witness_stopped(report, name):
                    del pending[member_name]
            return not pending

        if pending:
            await async_wait_until(settled, timeout, POLL_INTERVAL)
        return StopAndReportResult(name, own_lsn, action.witnesses, action.reports_needed, tuple(reports.values()))

    async def _promote(self, action: Promote, local: LocalView, cluster: ClusterView) -> bool:
        config = cluster.config
        if not self.lease.held():
            logger.error("not promoting: our lease deadline has passed meanwhile")
            return False
        result = await self._stop_and_report(action, cluster, local.lsn or 0, timeout=config.retry_timeout)
        replacement = self.report(result)
        if replacement:
            return await self._abandon(replacement, config, cluster)
        unanswered = sorted(action.witnesses - {r.name for r in result.reports if witness_stopped(r, result.name)})
        if action.reports_needed and unanswered:
            logger.warning("promoting with reports from %s of the %s needed; no answer from %s",
                           len(action.witnesses) - len(unanswered), action.reports_needed, unanswered)
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

    # --- switchover --------------------------------------------------------------------------
    async def _switchover(self, candidate: str, request_id: str, cluster: ClusterView) -> bool:
        """DESIGN rule 4: stop, check the candidate has our shutdown checkpoint, hand over."""
        config = cluster.config
        target = cluster.members[candidate]
        async with self.lease.kept_alive(config.loop_wait, config.retry_timeout):
            self.before_demote()
            logger.info("switchover to %s: stopping PostgreSQL (fast)", candidate)
            await self._stop("fast", config)
            control = await self.pg.controldata(timeout=config.retry_timeout)
            lsn = control.checkpoint_lsn
            replacement = self.report(SwitchoverStopped(candidate, request_id, control.cluster_state, lsn))
            if replacement:
                return await self._abandon(replacement, config, cluster)
            caught_up = await self._wait_received(target.name, cluster, lsn, timeout=max(5.0, config.ttl))
            replacement = self.report(CandidateCaughtUp(candidate, request_id, lsn, caught_up))
            if replacement:
                return await self._abandon(replacement, config, cluster)
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
        member = cluster.members[candidate]

        async def received() -> bool:
            position = (await fetch_peer_positions(self.http, [member], timeout=1.0))[candidate]
            return position.reachable and position.lsn is not None and position.lsn >= lsn

        return await async_wait_until(received, timeout, POLL_INTERVAL)

    # --- bootstrap ---------------------------------------------------------------------------
    async def _bootstrap(self, action: Bootstrap, cluster: ClusterView) -> bool:
        config = cluster.config
        async with self.lease.kept_alive(config.loop_wait, config.retry_timeout):
            try:
                if not action.existing_data:
                    self.report(Busy(PgState.INITIALIZING))
                    await self.pg.initdb(self.settings.bootstrap.initdb, timeout=self._slow_timeout(config))
                self.report(BootstrapStarting())  # no standby exists yet; the roles below must commit
                await self.pg.start(standby=False, upstream=None, slot=None, parameters=self.parameters(config),
                                    timeout=self._slow_timeout(config))
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
                self.report(BootstrapDone())
                logger.info("bootstrapped cluster %s with system identifier %s", self.settings.scope,
                            control_sysid)
                return True
            except (TimeoutError, PostgresError, ConsensusError, RuntimeError, OSError) as exc:
                logger.error("bootstrap failed: %s; stopping and giving the claim back", exc)
                self.report(BootstrapFailed())
                if self.pg.postmaster_pid() is not None:
                    await self._stop("immediate", config)
                await self.lease.disarm_fence()
                await self.lease.release(timeout=config.retry_timeout)
                return False
