"""The HA loop: gather views, publish our status, step the core, carry out its actions.

One cycle every loop_wait, and at once when something happens that decide() must see: the
lease of another member reaching its expiry time, a change in the Raft state (switchover
request, lease handed to us), an action that changed the lease, an operator request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from raftpg.clock import boottime
from raftpg.config import ConfigError, DynamicConfig, Settings
from raftpg.consensus import ConsensusError, RaftNode, Snapshot
from raftpg.fence.client import FenceClient
from raftpg.ha.actions import (
    AcquireLease,
    Action,
    ApplyConfig,
    ClearFailover,
    EnsureSlots,
    Idle,
    RemoveMember,
    RenewLease,
    SetPostgresSync,
    SetRaftSync,
)
from raftpg.ha.core import complete, step
from raftpg.ha.executor import Executor, LocalRequest
from raftpg.ha.lease import LeaseKeeper
from raftpg.ha.memory import Memory
from raftpg.ha.observations import (
    ConfigApplied,
    CycleStarted,
    DecisionDue,
    Gathered,
    Observation,
    OperatorRequest,
    RequestKind,
    RestartScheduled,
    ShutdownRequested,
)
from raftpg.ha.peers import fetch_peer_positions
from raftpg.ha.process_exit import PostmasterWatch
from raftpg.ha.publishing import heartbeat_interval, should_publish
from raftpg.ha.records import member_record, node_status, system_identifier
from raftpg.ha.status import NodeStatus
from raftpg.ha.sync import ASYNC, parse_standby_names
from raftpg.ha.views import (
    ClusterView,
    LocalView,
    MemberView,
    PgRole,
)
from raftpg.ha.watchdog import Watchdog, WatchdogError
from raftpg.http.client import MemberClient
from raftpg.postgres.controldata import ControlData
from raftpg.postgres.datadir import DataDirState
from raftpg.postgres.errors import PostgresError
from raftpg.postgres.instance import PostgresInstance
from raftpg.postgres.status import PgStatus

logger = logging.getLogger(__name__)

ORPHAN_WAIT = 0.5  # seconds a cycle waits for the backends of a killed postmaster to exit
SWITCHOVER_CYCLE = 0.1  # seconds between cycles while a switchover is under way
# Actions after which PostgreSQL's role, state and upstream are what they were before.
KEEPS_POSTGRES_AS_IS = (RenewLease, AcquireLease, EnsureSlots, SetRaftSync, SetPostgresSync, ClearFailover,
                        RemoveMember)
MIN_FREE_BYTES = 256 * 2**20  # below this on pg_wal's or Raft's filesystem a node steps down
PEER_CHECK_FIRST = 3.0  # seconds after start of the first steady-state peer check
PEER_CHECK_INTERVAL = 30.0
PEER_CHECK_TIMEOUT = 2.0


class HaLoop:
    def __init__(self, settings: Settings, raft: RaftNode, pg: PostgresInstance, fence: FenceClient) -> None:
        self.settings = settings
        self.raft = raft
        self.pg = pg
        self.instance_id = uuid.uuid4().hex
        self.watchdog = Watchdog(settings.watchdog, settings.bootstrap.dcs.ttl)
        self._watchdog_problem: str | None = None
        self.lease = LeaseKeeper(raft, fence, settings.name, self.instance_id, self.watchdog)
        self.http = MemberClient(settings.restapi)
        self._parsed_config: tuple[int, DynamicConfig] | None = None
        self.memory = Memory()
        self.executor = Executor(settings, raft, pg, self.lease, self.http, lambda: self.memory, self._step)
        self.executor.before_demote = self.invalidate_primary_status
        self._requests: list[tuple[LocalRequest, asyncio.Future[str]]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_decision = ""
        self._status = NodeStatus(name=settings.name, scope=settings.scope, role="unknown", state="starting",
                                  tags=settings.tags)
        self._postmaster_watch = PostmasterWatch(pg.postmaster_pid, lambda: self._status.pg_running,
                                                 self._postmaster_exited)
        self.cycles = 0
        self._wal_dir = settings.postgresql.data_dir / "pg_wal"  # its disk is checked every cycle
        self._publishing: asyncio.Task[None] | None = None

    def _step(self, observation: Observation) -> list[Action]:
        """Feed the core (synchronous: no other task can step it in between); `now` is read here."""
        self.memory, actions = step(self.memory, observation, boottime())
        return actions

    # --- what the API reads ------------------------------------------------------------------
    def status(self) -> NodeStatus:
        return self._status

    def wake(self) -> None:
        """Thread-safe enough: only ever called on the loop (Raft's on_change is bridged there)."""
        self._wake.set()

    def submit(self, request: LocalRequest, done: asyncio.Future[str]) -> None:
        self._requests.append((request, done))
        self.wake()

    def schedule_restart(self, at_wall: float) -> None:
        self._step(RestartScheduled(at_wall))
        self.wake()

    def cancel_scheduled_restart(self) -> bool:
        had = self.memory.scheduled_restart is not None
        self._step(RestartScheduled(None))
        return had

    def config(self) -> DynamicConfig:
        """The dynamic configuration in force, parsed once per version (every set_config bumps it)
        and shared, immutable, by the loop, the executor (through the cluster view of the cycle, so
        one cycle decides and acts on one version) and the REST API."""
        return self._config_of(self.raft.snapshot())

    def _config_of(self, snap: Snapshot) -> DynamicConfig:
        """config() of a snapshot the caller already holds (each snapshot is a deep copy)."""
        cached = self._parsed_config
        if cached is not None and cached[0] == snap.config_version:
            return cached[1]
        config = self.settings.bootstrap.dcs
        if snap.config:
            try:
                config = DynamicConfig.from_dict(snap.config)
            except ConfigError as exc:
                logger.error("dynamic configuration version %s in Raft is invalid (%s); using the bootstrap one",
                             snap.config_version, exc)
        self._parsed_config = (snap.config_version, config)
        return config

    # --- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        await self._probe_required_watchdog()
        watcher = asyncio.create_task(self._postmaster_watch.run())
        peer_check = asyncio.create_task(self._check_peers())
        try:
            while not self._stopping:
                if not self.raft.tick_thread_alive():
                    raise RuntimeError("the Raft tick thread died: stopping (the fence takes over)")
                started = boottime()
                try:
                    again = await self.cycle()
                except (TimeoutError, ConsensusError, OSError) as exc:
                    logger.warning("HA cycle failed: %s", exc)
                    again = False
                self.cycles += 1
                if not again:
                    await self._sleep(started)
        finally:
            for task in (watcher, peer_check, self._publishing):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self.http.close()

    def _postmaster_exited(self) -> None:
        """Health answers must not say 'running' after the postmaster died, and a crashed primary
        is restarted at once rather than at the next tick (process_exit.PostmasterWatch)."""
        logger.warning("PostgreSQL exited (postmaster gone); running an HA cycle now")
        self._status = replace(self._status, pg_running=False, state="stopped", lease_deadline=None)
        self.wake()

    async def _check_peers(self) -> None:
        """Ask every other member's REST API for its status now and then, so a TLS or
        authentication problem with a peer is logged and shown in /patroni's peer_problems while
        all is well, not first during a leader race (MemberClient records the failures)."""
        await asyncio.sleep(PEER_CHECK_FIRST)
        while True:
            snap = self.raft.snapshot()
            others = [MemberView.from_record(name, record, fresh=True) for name, record in snap.members.items()
                      if name != self.settings.name]
            await fetch_peer_positions(self.http, others, timeout=PEER_CHECK_TIMEOUT)
            await asyncio.sleep(PEER_CHECK_INTERVAL)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _sleep(self, started: float) -> None:
        snap = self.raft.snapshot()
        config = self._config_of(snap)
        delay = max(0.0, started + config.loop_wait - boottime())
        lease = snap.lease
        if _switchover_imminent(snap.failover, time.time(), config.loop_wait):
            # The old primary waits on our published position (rule 4): keep it fresh.
            delay = min(delay, SWITCHOVER_CYCLE)
        if lease.holder is not None and lease.holder != self.settings.name:
            until_expiry = lease.expires_at() - boottime() + 0.01
            if until_expiry > 0:
                delay = min(delay, until_expiry)
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):  # unlike wait_for, no task per cycle
                await self._wake.wait()

    async def cycle(self) -> bool:
        """One HA cycle. Returns True when the next one should run at once."""
        snap = self.raft.snapshot()
        config = self._config_of(snap)
        pg_status = await self.pg.status(timeout=config.retry_timeout)
        if not pg_status.running:
            await self.pg.wait_orphans_gone(ORPHAN_WAIT)
        control = None if pg_status.running else await self._controldata(config)
        now = boottime()
        local = self._local_view(pg_status, control, now)
        cluster = ClusterView.from_snapshot(snap, config, now)
        due = self._step(CycleStarted(cluster, local, _primary_sync_names(pg_status),
                                      config_version=snap.config_version, pg_running=pg_status.running))
        local = complete(self.memory, cluster, local)
        if self.lease.holds(now):
            # The holder must not let a slow publish delay its renewal: publish alongside.
            self._start_publish(local, pg_status, config)
        else:
            await self._publish(local, pg_status, config)
        served = await self._serve_requests(due, local, cluster)
        # Publishing and asking the peers may have taken seconds: decide on the present.
        now = boottime()
        local = replace(local, now=now, lease_deadline=self.lease.deadline)
        snap = self.raft.snapshot()
        cluster = ClusterView.from_snapshot(snap, config, now)
        if (cluster.lease.free or cluster.lease.expired) and cluster.system_identifier is not None \
                and local.role is PgRole.REPLICA and not self.lease.holds(now):
            others = [m for m in cluster.members.values() if m.name != local.name]
            peers = await fetch_peer_positions(self.http, others, timeout=min(2.0, config.retry_timeout))
            cluster = replace(cluster, peers=MappingProxyType(peers))
        actions = self._step(DecisionDue(cluster, local))
        local = complete(self.memory, cluster, local)
        self._log_decision(actions)
        again = False
        changed_postgres = served
        for action in actions:
            if isinstance(action, Idle):
                continue
            changed_postgres = changed_postgres or not isinstance(action, KEEPS_POSTGRES_AS_IS)
            result = await self.executor.carry_out(action, local, cluster)
            again = again or result.cycle_now
            if not result.succeeded:
                break
        if changed_postgres:
            # Health answers must describe PostgreSQL as it is now, not as it was before we acted.
            pg_status = await self.pg.status(timeout=config.retry_timeout)
            control = None if pg_status.running else await self._controldata(config)
            now = boottime()
            cluster = ClusterView.from_snapshot(self.raft.snapshot(), config, now)
            local = self._local_view(pg_status, control, now)
            self._step(Gathered(cluster, local, _primary_sync_names(pg_status)))
            local = complete(self.memory, cluster, local)
            await self._publish(local, pg_status, config)  # others judge us by this record
        deadline = self.lease.deadline if self.lease.holds(boottime()) else None
        self._status = node_status(self.settings, local, pg_status, cluster, self.memory, deadline,
                                   self._last_decision, boottime())
        self._postmaster_watch.status_changed()
        await self._steer_watchdog(config)
        return again

    async def _serve_requests(self, due: list[Action], local: LocalView, cluster: ClusterView) -> bool:
        """The due work of CycleStarted (a configuration reload, a scheduled restart) and the
        operator's requests, each answered by the core. True if PostgreSQL may have changed."""
        served = False
        for action in due:
            if isinstance(action, ApplyConfig):
                await self._apply_dynamic_parameters(cluster.config, action.version)
            else:
                served = True
                await self.executor.serve(RequestKind.RESTART.value, [action], local, cluster)
        while self._requests:
            request, done = self._requests.pop(0)
            served = True
            answer = self._step(OperatorRequest(RequestKind(request.kind), local))
            message = await self.executor.serve(request.kind, answer, local, cluster)
            if not done.done():
                done.set_result(message)
        return served

    async def _probe_required_watchdog(self) -> None:
        """A node whose required watchdog cannot be armed must never lead: find out before racing."""
        if not self.watchdog.is_required:
            return
        try:
            await self.watchdog.arm()
        except (WatchdogError, ValueError) as exc:
            self._watchdog_problem = f"watchdog is required but cannot be armed: {exc}"
            logger.error("%s; this node will not lead", self._watchdog_problem)
        finally:
            await self.watchdog.disarm()

    async def _steer_watchdog(self, config: DynamicConfig) -> None:
        """Armed exactly while we are the primary holding the lease and not paused."""
        wanted = self._status.role == "primary" and self.lease.holds(boottime()) and not config.pause
        if wanted and not self.watchdog.armed:
            self.watchdog.ttl = config.ttl
            try:
                armed = await self.watchdog.arm()
            except (WatchdogError, ValueError) as exc:
                self._watchdog_problem = f"watchdog is required but cannot be armed: {exc}"
                logger.error("%s", self._watchdog_problem)
                return
            self._watchdog_problem = None
            if armed:
                logger.info("watchdog armed (%ss)", self.watchdog.timeout)
        elif not wanted and self.watchdog.armed:
            await self.watchdog.disarm()
            logger.info("watchdog disarmed")

    async def _apply_dynamic_parameters(self, config: DynamicConfig, version: int) -> None:
        """An edited dynamic configuration reaches PostgreSQL by a reload; parameters that need a
        restart then show as pending_restart until `restart --pending`."""
        try:
            await self.pg.reload(parameters=self.executor.parameters(config), timeout=config.retry_timeout)
        except (PostgresError, OSError) as exc:
            logger.warning("could not apply configuration version %s: %s", version, exc)
            return
        if self.memory.config_applied is not None:
            logger.info("applied dynamic configuration version %s (reload)", version)
        self._step(ConfigApplied(version))

    async def _controldata(self, config: DynamicConfig) -> ControlData | None:
        if self.pg.data_dir_state() is not DataDirState.INITIALIZED:
            return None
        try:
            return await self.pg.controldata(timeout=config.retry_timeout)
        except (TimeoutError, OSError, RuntimeError) as exc:
            logger.warning("pg_controldata failed: %s", exc)
            return None

    def _log_decision(self, actions: list[Action]) -> None:
        text = "; ".join(f"{type(a).__name__}: {a.reason}" for a in actions)
        if text != self._last_decision:
            warn = any(isinstance(a, Idle) and a.warning for a in actions)
            lease = self.raft.snapshot().lease
            status = self.raft.raft_status()
            logger.log(logging.WARNING if warn else logging.INFO, "decided [term %s, lease v%s %s]: %s",
                       status.term, lease.version, lease.holder, text)
            self._last_decision = text

    # --- views -------------------------------------------------------------------------------
    def _local_view(self, pg: PgStatus, control: ControlData | None, now: float) -> LocalView:
        """The facts about this node; what it remembers is added by the core (core.complete)."""
        data_dir = self.pg.data_dir_state()
        if pg.running:
            role = PgRole.REPLICA if pg.in_recovery else PgRole.PRIMARY
        elif self.pg.surely_stopped():
            role = PgRole.STOPPED
        else:
            role = PgRole.UNKNOWN  # a postmaster we cannot query, or processes of a killed one
        primary = role is PgRole.PRIMARY
        return LocalView(
            name=self.settings.name,
            instance_id=self.instance_id,
            now=now,
            wall_now=time.time(),
            tags=self.settings.tags,
            data_dir=data_dir,
            role=role,
            system_identifier=system_identifier(pg, control),
            timeline=pg.timeline if pg.running else (control.timeline if control else None),
            lsn=pg.lsn,
            replay_lsn=pg.replay_lsn,
            streaming=pg.streaming,
            was_primary=control is not None and control.cluster_state.last_ran_as_primary,
            lease_deadline=self.lease.deadline,
            rewind_interrupted=self.pg.rewind_interrupted(),
            postgres_sync=parse_standby_names(pg.synchronous_standby_names) if primary else ASYNC,
            standbys=MappingProxyType({r.application_name: r.flush_lsn for r in pg.replication
                                       if r.state == "streaming" and r.flush_lsn is not None}),
            cannot_lead=self._cannot_lead(),
            standby_mode=self.pg.standby_signal_present(),
        )

    def _cannot_lead(self) -> str | None:
        """A required watchdog we cannot arm, or pg_wal or the Raft journal close to filling its
        disk (a full Raft disk is SIGBUS)."""
        if self._watchdog_problem is not None:
            return self._watchdog_problem
        wal = self._wal_dir
        for label, path in (("pg_wal", wal if wal.exists() else self.settings.postgresql.data_dir.parent),
                            ("the Raft directory", self.settings.raft.data_dir)):
            try:
                stats = os.statvfs(path)
            except OSError:
                continue
            free = stats.f_bavail * stats.f_frsize
            if free < MIN_FREE_BYTES:
                return f"disk nearly full: {label} has {free // 2**20} MiB free (< {MIN_FREE_BYTES // 2**20} MiB)"
        return None

    def _start_publish(self, local: LocalView, pg: PgStatus, config: DynamicConfig) -> None:
        if self._publishing is not None and not self._publishing.done():
            return  # the previous one is still under way; the next cycle publishes again
        self._publishing = asyncio.create_task(self._publish(local, pg, config))

    async def _publish(self, local: LocalView, pg: PgStatus, config: DynamicConfig) -> None:
        """Publish our record if it changed or the heartbeat is due (publishing.py)."""
        record = member_record(self.settings, self.instance_id, local, pg, self.memory.state,
                               self._status.needs_reinit)
        snap = self.raft.snapshot()
        name = self.settings.name
        if not should_publish(snap.members.get(name), record, snap.member_applied_at.get(name), boottime(),
                              heartbeat_interval(config.ttl, config.loop_wait)):
            return
        try:
            await self.raft.publish_member(self.settings.name, record, timeout=config.retry_timeout)
        except ConsensusError as exc:
            logger.warning("could not publish our member status: %s", exc)

    def invalidate_primary_status(self) -> None:
        """Called before a demotion starts: /primary must say 503 from this instant."""
        self._status = replace(self._status, lease_deadline=None, role="demoting")

    async def shutdown(self, handover_timeout: float) -> None:
        """Clean stop (rule 4): hand the lease to the best replica, or stop and release."""
        await self.watchdog.disarm()
        cluster = ClusterView.from_snapshot(self.raft.snapshot(), self.config(), boottime())
        status = self._status
        plan = self._step(ShutdownRequested(cluster, self.settings.name, status.role,
                                            holds_lease=self.lease.holds(boottime())))
        await self.executor.shutdown(plan, cluster, handover_timeout)


def _primary_sync_names(pg: PgStatus) -> str | None:
    return pg.synchronous_standby_names if pg.running and pg.in_recovery is False else None


def _switchover_imminent(request: Mapping[str, Any] | None, wall_now: float, loop_wait: float) -> bool:
    if request is None:
        return False
    scheduled = request.get("scheduled_at")
    return scheduled is None or float(scheduled) - wall_now < 2 * loop_wait
