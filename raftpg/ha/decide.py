"""The HA brain: a pure function from views to actions.

decide() reads only its arguments: no I/O, no clock, no globals. The loop (ha/loop.py) gathers the
views, carries out the actions in order (stopping at the first that fails) and runs the next cycle
at once when an action changed the lease. Every path to primary goes through AcquireLease (a
compare-and-set on the lease), never around it (DESIGN rule 1).
"""

from __future__ import annotations

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
from raftpg.ha.candidates import best_switchover_candidate, race_blocker
from raftpg.ha.sync import ASYNC, Candidate, may_fall_back, next_step, target_set
from raftpg.ha.views import ClusterView, LocalView, PgRole
from raftpg.postgres.datadir import DataDirState

STEP_DOWN_REQUEST = "step-down"


def decide(cluster: ClusterView, local: LocalView) -> list[Action]:
    if cluster.system_identifier is None:
        return _uninitialized(cluster, local)
    if local.data_dir is DataDirState.INVALID:
        return [Idle("data directory is neither empty nor a PostgreSQL cluster: not touching it", warning=True)]
    if (
        local.data_dir is DataDirState.INITIALIZED
        and local.system_identifier is not None
        and local.system_identifier != cluster.system_identifier
    ):
        return [
            Idle(
                f"refusing to join: data directory has system identifier {local.system_identifier}, "
                f"the cluster's is {cluster.system_identifier}",
                warning=True,
            )
        ]
    if local.rewind_interrupted and local.role is PgRole.STOPPED and not cluster.paused:
        # pg_rewind had begun overwriting it with the source's files: PostgreSQL documents such a
        # directory as unusable, in every mode. Moved aside, nothing of it is lost.
        return [MoveDataAside("an interrupted pg_rewind left the data directory unusable: moving it aside "
                              "to re-clone")]
    lease = cluster.lease
    if local.holds_lease(lease):
        return _as_holder(cluster, local)
    if lease.holder == local.name:
        return _lease_named_after_us(cluster, local)
    if lease.free or lease.expired:
        return _lease_open(cluster, local)
    return _as_follower(cluster, local)


def _uninitialized(cluster: ClusterView, local: LocalView) -> list[Action]:
    lease = cluster.lease
    if local.holds_lease(lease) and lease.bootstrapping:
        # Only reachable if a bootstrap failed half-way in this process: give the claim back.
        return [ReleaseLease("bootstrap did not complete; releasing the bootstrap claim")]
    if local.bootstrap_failed:
        if local.data_dir is DataDirState.INITIALIZED:
            return [MoveDataAside("previous bootstrap attempt failed; moving its data directory aside")]
        return [Idle("previous bootstrap attempt failed; waiting for another member", warning=True)]
    if not (lease.free or lease.expired):
        return [Idle(f"cluster is being bootstrapped by {lease.holder}")]
    if local.data_dir is DataDirState.INVALID:
        return [Idle("data directory is neither empty nor a PostgreSQL cluster: not bootstrapping", warning=True)]
    if local.tags.nofailover:
        return [Idle("nofailover is set: waiting for another member to bootstrap")]
    return [
        AcquireLease(
            "cluster not initialised and no bootstrap claim: claiming it",
            lease.version,
            lease.revision,
            bootstrapping=True,
        ),
        Bootstrap(
            "bootstrap claim held: " + ("adopting existing data directory" if local.data_dir is
                                        DataDirState.INITIALIZED else "running initdb"),
            existing_data=local.data_dir is DataDirState.INITIALIZED,
        ),
    ]


def _as_holder(cluster: ClusterView, local: LocalView) -> list[Action]:
    renew = RenewLease("holding the lease", clear_bootstrapping=cluster.lease.bootstrapping)
    if local.data_dir is not DataDirState.INITIALIZED:
        return [ReleaseLease("holding the lease but the data directory is gone")]
    if local.role is PgRole.REPLICA:
        handover = cluster.lease.lsn_at_handover
        if handover is not None and (local.replay_lsn or 0) < handover:
            return [renew, Idle(f"waiting to replay up to the hand-over LSN {handover} before promoting")]
        return [renew, Promote("lease acquired: promoting")]
    if local.role in (PgRole.STOPPED, PgRole.UNKNOWN):
        release = _release_while_down(cluster, local)
        if release is not None:
            return [release]
        if local.role is PgRole.UNKNOWN:
            return [renew, Idle("PostgreSQL is not answering; keeping the lease for now", warning=True)]
        if cluster.paused:
            return [renew, Idle("paused: PostgreSQL is not running and will not be restarted")]
        if not local.was_primary:
            # A standby's data directory (e.g. a switchover target killed after the hand-over, before it
            # promoted). Started as a primary, recovery would end on pg_control's timeline and drop the
            # WAL it received on a newer one: acknowledged writes (chaos seed 200 lost 804 this way).
            # As a standby it replays everything it received; the replica path then promotes it.
            # Given as long to become consistent as rule 6 gives a holder whose PostgreSQL does not answer.
            return [renew, StartStandby("holding the lease with a standby's data directory: starting it as a "
                                        "standby to replay all the WAL it received, then promoting", None,
                                        max(cluster.config.start_timeout, cluster.config.ttl))]
        return [renew, StartPrimary("holding the lease and PostgreSQL is not running: starting it as primary")]
    actions: list[Action] = [renew, *_sync_actions(cluster, local)]
    expired = sorted(m.name for m in cluster.members.values()
                     if m.name != local.name and m.age > cluster.config.member_slots_ttl)
    actions.extend(RemoveMember(f"{name} has not been seen for more than member_slots_ttl "
                                f"{cluster.config.member_slots_ttl:g}s: forgetting it and its slot", name)
                   for name in expired)
    actions.extend(RemoveMember(f"witness {name} has not been seen for more than member_slots_ttl "
                                f"{cluster.config.member_slots_ttl:g}s: forgetting its record", name)
                   for name, age in sorted(cluster.witness_ages.items()) if age > cluster.config.member_slots_ttl)
    actions.extend(_slots(cluster, local, exclude=frozenset(expired)))
    if local.cannot_lead is not None:
        candidate = best_switchover_candidate(cluster, local.name, None)
        if candidate is not None:
            actions.append(Switchover(f"stepping down: {local.cannot_lead}", candidate, STEP_DOWN_REQUEST))
            return actions
        actions.append(Idle(f"{local.cannot_lead}, but no healthy replica to hand over to", warning=True))
    if cluster.failover is not None:
        actions.extend(_handle_failover_request(cluster, local))
    return actions


def _release_while_down(cluster: ClusterView, local: LocalView) -> ReleaseLease | None:
    """DESIGN rule 6: a holder whose PostgreSQL is not running as primary lets go after
    primary_start_timeout (0 by default in on/quorum mode: at once, so a synchronous standby takes
    over). STOPPED means surely stopped (no postmaster and no process left on the data
    directory), so releasing cannot leave a writable primary behind; a postmaster that is alive but
    not answering (UNKNOWN) gets at least one ttl, and the release stops it first."""
    if cluster.paused:
        return None
    config = cluster.config
    timeout = config.start_timeout
    if local.role is PgRole.UNKNOWN:
        timeout = max(timeout, config.ttl)
    down_for = local.now - local.pg_down_since if local.pg_down_since is not None else 0.0
    if down_for < timeout:
        return None
    state = "is not running" if local.role is PgRole.STOPPED else "is not answering"
    return ReleaseLease(f"PostgreSQL {state} as primary for {down_for:.1f}s (limit {timeout:g}s, "
                        f"primary_start_timeout {config.start_timeout:g}s): releasing the lease so another "
                        "member can take over")


def _slots(cluster: ClusterView, local: LocalView, exclude: frozenset[str] = frozenset()) -> list[Action]:
    """A physical slot for every other member, on the primary and on replicas alike, so a promoted
    replica already holds the others' slots (replicas advance theirs to their replay position)."""
    if not cluster.config.use_slots:
        return []
    members = frozenset(name for name in cluster.members if name != local.name) - exclude
    return [EnsureSlots("replication slots for members", members, frozenset(cluster.config.permanent_slots))]


def sync_candidates(cluster: ClusterView, local: LocalView) -> list[Candidate]:
    """Streaming standbys that may be synchronous: fresh running replicas not tagged nosync."""
    candidates = []
    for name, flush in sorted(local.standbys.items()):
        member = cluster.members.get(name)
        if (member is not None and member.fresh and member.role == "replica" and member.state == "running"
                and not member.tags.nosync):
            candidates.append(Candidate(name, flush))
    return candidates


def _sync_actions(cluster: ClusterView, local: LocalView) -> list[Action]:
    """One step of rule 5's protocol towards the synchronous set we want (sync.py)."""
    config = cluster.config
    raft = cluster.sync.as_set()
    if config.synchronous_mode == "off" and raft.empty and local.postgres_sync == ASYNC:
        return []
    candidates = sync_candidates(cluster, local)
    timeout = config.fallback_timeout
    fall_back = may_fall_back(local.sync_waiting_since, local.now, timeout)
    target = target_set(config.synchronous_mode, config.synchronous_node_count, config.synchronous_mode_strict,
                        candidates, raft, fall_back=fall_back)
    waiting: list[Action] = []
    if (not candidates and not fall_back and not config.synchronous_mode_strict
            and local.postgres_sync != ASYNC and config.synchronous_mode != "off"):
        waiting = [Idle(f"no synchronous standby: commits stay blocked up to {timeout:g}s "
                        "waiting for a synchronous standby")]
    switch_lsn = local.sync_switch_lsn if local.sync_switch_lsn is not None else (local.lsn or 0)
    step = next_step(raft, local.postgres_sync, target, local.standbys, switch_lsn)
    if step is None:
        return waiting
    fallback: list[Action] = []
    if target == ASYNC and config.synchronous_mode != "off":
        fallback = [Idle(f"no synchronous standby for {timeout:g}s: running asynchronously", warning=True)]
    if step.raft is not None:
        return [SetRaftSync(step.reason, step.raft.members, step.raft.quorum), *fallback]
    assert step.postgres is not None
    return [SetPostgresSync(step.reason, step.postgres.members, step.postgres.quorum), *fallback]


def _handle_failover_request(cluster: ClusterView, local: LocalView) -> list[Action]:
    request = cluster.failover
    assert request is not None
    if request.leader is not None and request.leader != local.name:
        return [ClearFailover(f"switchover request names {request.leader} as leader, not us", request.request_id)]
    if request.candidate == local.name:
        return [ClearFailover("switchover candidate is already the leader", request.request_id)]
    if request.scheduled_at is not None and local.wall_now < request.scheduled_at:
        return [Idle(f"switchover scheduled in {request.scheduled_at - local.wall_now:.0f}s")]
    candidate = best_switchover_candidate(cluster, local.name, request.candidate)
    if candidate is None:
        wanted = request.candidate or "any member"
        return [ClearFailover(f"switchover cancelled: {wanted} is not a healthy streaming replica",
                              request.request_id)]
    return [Switchover(f"switchover requested to {candidate}", candidate, request.request_id)]


def _lease_named_after_us(cluster: ClusterView, local: LocalView) -> list[Action]:
    """The log names us as holder, but this process has no committed renewal of its own."""
    lease = cluster.lease
    if lease.instance_id == local.instance_id:
        if local.lease_deadline is None:
            return [RenewLease("the lease was handed over to us: confirming it before promoting")]
        actions: list[Action] = []
        if local.role is PgRole.PRIMARY:
            overdue = local.now - local.lease_deadline
            actions.append(Demote(f"demoting: lease not renewed for {overdue:.1f}s past its deadline"))
        actions.append(RenewLease("trying to renew the lease we hold in the log"))
        return actions
    if lease.expired:
        return _lease_open(cluster, local)
    if local.data_dir is not DataDirState.INITIALIZED:
        return [Idle("the log names us as holder from an earlier process, but we have no data")]
    reclaim = AcquireLease("restarted while the log names us as holder: reclaiming the lease",
                           lease.version, lease.revision)
    if local.role is PgRole.STOPPED and cluster.config.start_timeout == 0 and not cluster.paused:
        # Surely stopped (see _release_while_down): hand the lease on now rather than let it run out.
        return [reclaim, ReleaseLease("restarted as holder with PostgreSQL surely stopped and "
                                      "primary_start_timeout 0: releasing the lease at once")]
    return [reclaim]


def _lease_open(cluster: ClusterView, local: LocalView) -> list[Action]:
    lease = cluster.lease
    if local.role is PgRole.PRIMARY:
        return [Demote(f"demoting: running as primary without the lease (holder {lease.holder}, expired)")]
    request = cluster.failover
    manual = request is not None and request.candidate == local.name and request.leader in (None, lease.holder)
    if cluster.paused and not manual:
        return [Idle("paused: the lease is free but automatic failover is suspended")]
    if request is not None and request.candidate not in (None, local.name):
        target = cluster.members.get(request.candidate)
        if target is not None and target.fresh:
            return [Idle(f"failover requested to {request.candidate}: leaving the race to it")]
    if local.data_dir is not DataDirState.INITIALIZED:
        return [Idle("no data directory and no leader to clone from: waiting")]
    accept_loss = manual and request is not None and request.accept_data_loss
    if local.role is PgRole.STOPPED:
        if cluster.paused:
            return [Idle("paused: not starting PostgreSQL")]
        sync = cluster.sync
        if sync.members and sync.quorum > 0 and local.name not in sync.members and not accept_loss:
            # We cannot win (candidates._sync_blocker), and a crashed primary started as a standby
            # would report WAL no one acknowledged and hold the synchronous members back.
            return [Idle(f"not in the synchronous set {sorted(sync.members)}: leaving the race to its members")]
        return [StartStandby("lease is free: starting PostgreSQL as a standby to learn our position", None,
                             cluster.config.retry_timeout)]
    blocker = race_blocker(cluster, local, manual=manual, accept_data_loss=accept_loss)
    if blocker is not None:
        return [Idle(f"not taking the lease: {blocker}")]
    why = "manual failover to us" if manual else (
        "lease is free" if lease.free else f"lease of {lease.holder} expired"
    )
    return [AcquireLease(f"{why} and we are the healthiest candidate: taking the lease",
                         lease.version, lease.revision)]


def _as_follower(cluster: ClusterView, local: LocalView) -> list[Action]:
    lease = cluster.lease
    holder = lease.holder
    assert holder is not None
    if local.role is PgRole.PRIMARY:
        return [Demote(f"demoting: {holder} holds the lease (version {lease.version})")]
    if local.data_dir is not DataDirState.INITIALIZED:
        if cluster.paused:
            return [Idle("paused: not cloning")]
        return [Clone(f"no data directory: cloning from {_clone_source(cluster, local)}",
                      _clone_source(cluster, local))]
    upstream = _upstream(cluster, local)
    if local.role is PgRole.STOPPED:
        if cluster.paused:
            return [Idle("paused: PostgreSQL is not running and will not be started")]
        if local.rewind_failed:
            return [_after_rewind_failure(cluster, local)]
        holder_member = cluster.holder_member
        may_diverge = local.was_primary or local.needs_rewind
        if may_diverge and (holder_member is None or holder_member.role != "primary"):
            return [Idle(f"waiting for {holder} to run as primary before comparing timelines for pg_rewind")]
        diverged = (
            may_diverge
            and holder_member is not None
            and holder_member.timeline is not None
            and local.timeline != holder_member.timeline
        )
        if diverged and local.needs_rewind and local.rewind_not_needed_from == holder:
            # pg_rewind found our WAL a prefix of the holder's history, yet the standby could not
            # become consistent: the WAL it still needs is gone from every member (a source re-cloned
            # or recycled it). Rewinding again changes nothing. Our WAL holds no write the holder
            # lacks ("not needed"), so a re-clone loses nothing; the directory is moved aside.
            return [MoveDataAside(f"pg_rewind found nothing to rewind from {holder}, yet the standby could not "
                                  "become consistent: the WAL it needs is gone; moving the data directory aside "
                                  "to re-clone")]
        if diverged:
            if not cluster.config.use_pg_rewind:
                return [Idle("former primary on another timeline and use_pg_rewind is off", warning=True)]
            return [Rewind(f"former primary on timeline {local.timeline}, leader {holder} on "
                           f"{holder_member.timeline if holder_member else '?'}: rewinding", holder)]
        return [StartStandby(f"starting as a standby of {upstream}", upstream, cluster.config.retry_timeout)]
    recovering = local.role is PgRole.UNKNOWN and local.standby_mode
    if local.role is PgRole.REPLICA and local.upstream != upstream:
        return [Follow(f"following {upstream} (was {local.upstream})", upstream)]
    if recovering and local.upstream != upstream:
        # Not consistent yet (it does not accept connections): the WAL it waits for may be on the leader.
        return [Follow(f"following {upstream} (was {local.upstream}) while PostgreSQL recovers", upstream)]
    holder_timeline = cluster.holder_member.timeline if cluster.holder_member else None
    if ((local.role is PgRole.REPLICA or recovering) and local.standby_stuck and holder_timeline is not None
            and holder_timeline != local.timeline):
        return [Demote(f"standby has not streamed from {upstream} for longer than ttl and is on timeline "
                       f"{local.timeline}, the leader on {holder_timeline}: stopping to rewind",
                       immediate=False, then_rewind=True)]
    if local.role is PgRole.REPLICA:
        return [*_slots(cluster, local), Idle(f"replica of {upstream}")]
    return [Idle(f"replica of {upstream}")]


def _after_rewind_failure(cluster: ClusterView, local: LocalView) -> Action:
    """Re-clone on our own when it is provably safe, else wait for the operator (or a retry).

    A rewind that failed on our own WAL (rewind_hopeless) fails the same way every time. In
    `on`/`quorum` mode our divergent WAL — what we wrote past the point the holder's timeline
    forked from ours — holds no acknowledged write: while we were primary every commit was
    acknowledged only once a synchronous quorum had it, and that quorum meets every member that
    could be promoted (rule 5), so the holder, promoted through the lease compare-and-set, has
    every one of them on its timeline. (The one exception is a non-strict primary that fell back
    to asynchronous commits because every standby had been gone for synchronous_fallback_timeout
    — more than one faulty member at once.) The directory is moved aside, never deleted, so even
    then nothing is destroyed. In asynchronous mode divergent WAL may hold acknowledged writes:
    only the operator decides (remove_data_directory_on_rewind_failure, or `raftpg ctl reinit`).
    """
    config = cluster.config
    if config.remove_data_directory_on_rewind_failure:
        return MoveDataAside("pg_rewind failed: moving the data directory aside to re-clone")
    if local.rewind_hopeless and config.synchronous_mode in ("on", "quorum"):
        return MoveDataAside(f"pg_rewind cannot succeed on our WAL, and in {config.synchronous_mode} mode the "
                             "WAL it cannot rewind holds no acknowledged write: moving the data directory "
                             "aside to re-clone")
    if local.rewind_hopeless:
        return Idle("pg_rewind cannot succeed on our WAL and synchronous_mode is off, so it may hold "
                    "acknowledged writes: run `raftpg ctl reinit` for this member to re-clone it", warning=True)
    return Idle("pg_rewind failed and remove_data_directory_on_rewind_failure is off", warning=True)


def _upstream(cluster: ClusterView, local: LocalView) -> str:
    """The holder, or a healthy replica named by our replicatefrom tag (cascading)."""
    holder = cluster.lease.holder
    assert holder is not None
    wanted = local.tags.replicatefrom
    if wanted and wanted != local.name:
        member = cluster.members.get(wanted)
        if member is not None and member.fresh and member.state == "running":
            return wanted
    return holder


def _clone_source(cluster: ClusterView, local: LocalView) -> str:
    """A fresh running replica tagged clonefrom if there is one, else the holder."""
    for member in sorted(cluster.members.values(), key=lambda m: m.name):
        if (member.name != local.name and member.tags.clonefrom and member.fresh
                and member.state == "running" and member.role == "replica"):
            return member.name
    holder = cluster.lease.holder
    assert holder is not None
    return holder
