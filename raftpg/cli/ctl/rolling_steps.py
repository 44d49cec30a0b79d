"""Carrying out `raftpg ctl rolling-restart`'s plan (rolling_plan.plan): the steps, one at a
time, each printed and recorded in Raft as it goes, each re-checking what it finds so that a run
continued after an interruption skips what is done (a member whose postmaster or raftpg start
time changed since the run began). With --daemon, replacing a raftpg is rolling_daemon.py's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from raftpg.cli.ctl.actions import POLL_INTERVAL
from raftpg.cli.ctl.client import CtlError, Unreachable
from raftpg.cli.ctl.model import ClusterView, MemberView
from raftpg.cli.ctl.rolling_daemon import raftpg_started, restart_daemon
from raftpg.cli.ctl.rolling_plan import Action, RunState, plan, switchover_candidate
from raftpg.cli.ctl.rolling_record import RunRecord
from raftpg.cli.ctl.session import Session
from raftpg.poll import wait_until

SQL_TIMEOUT = 3


@dataclass(frozen=True)
class Step:
    member: str
    action: str
    took: float | None  # None: skipped (already done by an interrupted run)


class Run:
    """One invocation: the session, the clock and the steps taken, printed as they happen."""

    def __init__(self, session: Session, args: argparse.Namespace) -> None:
        self.session = session
        self.quiet = args.format == "json"
        self.timeout: float = args.wait_timeout
        self.max_lag: int = args.max_lag
        self.began = time.monotonic()
        self.steps: list[Step] = []
        self.record = RunRecord(session)

    def say(self, text: str, style: str | None = None) -> None:
        line = f"[{time.monotonic() - self.began:7.1f}s] {text}"
        if self.quiet:
            self.session.err.print(line, style=style or "", highlight=False)
        else:
            self.session.print(line, style)

    def step(self, member: str, action: str, work: Callable[[], None]) -> None:
        """Recorded in Raft before (the step now under way) and after (done), so that every
        member shows the progress and a take-over by another ctl stops this one between steps."""
        label = f"{member}: {action}"
        self.record.beat(label)
        self.say(f"{label} ...")
        started = time.monotonic()
        work()
        took = time.monotonic() - started
        self.steps.append(Step(member, action, took))
        assert self.record.state is not None
        self.record.write(self.record.state.finished(label, self.record.clock()))
        self.say(f"{member}: {action} done in {took:.1f}s", "green")

    def skip(self, member: str, action: str, why: str) -> None:
        self.steps.append(Step(member, action, None))
        self.say(f"{member}: {action} skipped ({why})", "yellow")

    def wait(self, what: str, check: Callable[[], bool]) -> None:
        """Poll until `check`, with heartbeats in the record; API errors count as "not yet"
        (members restart meanwhile), a take-over by another ctl stops the wait."""
        def settled() -> bool:
            self.record.beat()
            try:
                return check()
            except CtlError:
                return False

        with self.session.out.status(f"Waiting for {what} ..."):
            if not wait_until(settled, self.timeout, POLL_INTERVAL):
                raise CtlError(f"{what}: not seen within {self.timeout:g}s; the cluster stays paused: fix it "
                               "and run rolling-restart again to continue")


# -- reading the members ------------------------------------------------------------------------


def _epoch(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace(" ", "T", 1)).timestamp()
        except ValueError:
            return None
    return None


def start_time(session: Session, member: MemberView) -> float | None:
    """The member's postmaster start time: from its /patroni, else asked of PostgreSQL itself
    (with the superuser of -c NODE.yml). None when PostgreSQL is not up."""
    try:
        published = _epoch(session.member_status(member, timeout=min(3.0, session.client.timeout))
                           .get("postmaster_start_time"))
    except CtlError:
        published = None
    if published is not None or session.settings is None or member.host is None:
        return published
    superuser = session.settings.postgresql.superuser
    try:
        with psycopg.connect(host=member.host, port=member.port, user=superuser.username,
                             password=superuser.password or None, dbname="postgres",
                             connect_timeout=SQL_TIMEOUT, autocommit=True) as conn:
            row = conn.execute("SELECT extract(epoch FROM pg_postmaster_start_time())::float8").fetchone()
    except psycopg.Error:
        return None
    return float(row[0]) if row is not None and row[0] is not None else None


def streams(session: Session, member: MemberView) -> bool:
    return session.member_status(member, timeout=min(3.0, session.client.timeout)) \
        .get("replication_state") == "streaming"


def streaming_states(session: Session, cluster: ClusterView) -> dict[str, bool]:
    found = {}
    for member in cluster.members:
        if member.is_leader or not member.api_url:
            continue
        try:
            found[member.name] = streams(session, member)
        except CtlError:
            found[member.name] = False
    return found


def member_named(session: Session, name: str) -> MemberView:
    member = session.cluster().member(name)
    if member is None:
        raise CtlError(f"{name} is no longer a member of the cluster")
    return member


# -- the steps ----------------------------------------------------------------------------------


def restart_member(run: Run, name: str, before: float | None) -> None:
    """POST /restart on the member, then wait until its postmaster is a new one and it streams."""
    session = run.session
    member = member_named(session, name)
    try:
        response = session.send_to(member, "POST", "restart", {}, timeout=run.timeout)
    except Unreachable:
        response = None  # it may still be restarting: the wait below decides
    if response is not None and "done" not in response.message:
        raise CtlError(f"{name}: restart not carried out: {response.message}")

    def restarted() -> bool:
        current = member_named(session, name)
        started = start_time(session, current)
        return started is not None and started != before and not current.is_leader and streams(session, current)

    run.wait(f"{name} to stream again after its restart", restarted)


def switch_over(run: Run, old: str, candidate: str) -> None:
    session = run.session
    with contextlib.suppress(Unreachable):  # the answer was lost: whether it happened is read back below
        session.send("POST", "switchover", {"leader": old, "candidate": candidate}, timeout=run.timeout)
    run.wait(f"{candidate} to hold the primary role", lambda: leader_name(session) == candidate)


def leader_name(session: Session) -> str | None:
    leader = session.cluster().leader
    return leader.name if leader is not None else None


def set_pause(run: Run, pause: bool) -> None:
    session = run.session
    session.send("PATCH", "config", {"pause": pause})
    members = session.cluster().members

    def everyone() -> bool:
        return all(session.member_status(m).get("pause", False) is pause for m in members)

    run.wait(f"every member to report pause={str(pause).lower()}", everyone)


def _daemon_step(run: Run, state: RunState, name: str) -> None:
    """--daemon: replace the member's raftpg unless this run already did."""
    if state.daemon_done(name, raftpg_started_quiet(run.session, name)):
        run.skip(name, "restart raftpg", "already restarted in this run")
        return
    run.step(name, "restart raftpg",
             functools.partial(restart_daemon, run.session, state, name, run.wait, run.timeout))


def raftpg_started_quiet(session: Session, name: str) -> float | None:
    try:
        return raftpg_started(session, name)
    except CtlError:
        return None


def _switchover_step(run: Run, state: RunState) -> None:
    session = run.session
    old = state.old_primary
    current = session.cluster()
    fresh = [m for m in current.members if not m.is_leader and state.restarted(m.name, start_time(session, m))]
    target = switchover_candidate(ClusterView(current.scope, tuple(fresh)), old)
    if target is None:
        raise CtlError("no restarted replica can take over (nofailover tags?); the cluster stays paused")
    run.step(old, f"switchover to {target.name}", functools.partial(switch_over, run, old, target.name))


def _old_primary_step(run: Run, state: RunState) -> None:
    """Stopped by the switchover, the old primary starts as a replica once resumed (a new
    postmaster); one that kept running (a failover meanwhile) is restarted like the others."""
    session = run.session
    old = state.old_primary

    def rejoined() -> None:
        run.wait(f"{old} to stream from the new primary", lambda: streams(session, member_named(session, old)))
        if not state.restarted(old, start_time(session, member_named(session, old))):
            restart_member(run, old, state.started[old])

    run.step(old, "start again as a replica", rejoined)


@dataclass(frozen=True)
class _Found:
    """What the run found when it (re)started: the postmaster start times and whether the primary
    already moved (an interrupted run that got past its switchover, or a failover meanwhile)."""

    times: dict[str, float | None]
    switched: bool


def drive(run: Run, state: RunState, times: dict[str, float | None]) -> None:
    """The steps of plan(state), in order; each one re-checks what it finds and skips what an
    interrupted run already did."""
    found = _Found(times, leader_name(run.session) != state.old_primary)
    for planned in plan(state):
        _STEPS[planned.action](run, state, planned.member, found)


def _pause(run: Run, state: RunState, member: str, found: _Found) -> None:
    pending = any(not state.daemon_done(n, raftpg_started_quiet(run.session, n)) for n in state.witnesses)
    to_do = pending or not found.switched or any(not state.restarted(n, found.times.get(n)) for n in state.replicas)
    if to_do and not run.session.cluster().paused:
        run.step(member, "pause", functools.partial(set_pause, run, True))


def _restart_postgres(run: Run, state: RunState, name: str, found: _Found) -> None:
    if state.restarted(name, found.times.get(name)):
        run.skip(name, "restart PostgreSQL", "already restarted in this run")
    elif member_named(run.session, name).is_leader:
        raise CtlError(f"{name} became the primary meanwhile (a failover?); the cluster stays paused")
    else:
        run.step(name, "restart PostgreSQL", functools.partial(restart_member, run, name, state.started[name]))


def _restart_raftpg(run: Run, state: RunState, name: str, found: _Found) -> None:
    _daemon_step(run, state, name)


def _primary_raftpg(run: Run, state: RunState, name: str, found: _Found) -> None:
    if not found.switched:
        _daemon_step(run, state, name)
    elif not state.daemon_done(name, raftpg_started_quiet(run.session, name)):
        run.say(f"{name}: its raftpg was not restarted (the primary moved before): restart it under "
                "`raftpg ctl pause` (systemctl restart raftpg)", "yellow")


def _switchover(run: Run, state: RunState, name: str, found: _Found) -> None:
    if found.switched:
        run.skip(name, "switchover", f"{leader_name(run.session)} is already the primary")
    else:
        _switchover_step(run, state)


def _resume(run: Run, state: RunState, member: str, found: _Found) -> None:
    if run.session.cluster().paused:
        run.step(member, "resume", functools.partial(set_pause, run, False))


def _rejoin(run: Run, state: RunState, name: str, found: _Found) -> None:
    if state.restarted(name, start_time(run.session, member_named(run.session, name))):
        run.skip(name, "start again as a replica", "already restarted in this run")
    else:
        _old_primary_step(run, state)


_STEPS: dict[Action, Callable[[Run, RunState, str, _Found], None]] = {
    Action.PAUSE: _pause,
    Action.WITNESS_RAFTPG: _restart_raftpg,
    Action.RESTART_POSTGRES: _restart_postgres,
    Action.RESTART_RAFTPG: _restart_raftpg,
    Action.PRIMARY_RAFTPG: _primary_raftpg,
    Action.SWITCHOVER: _switchover,
    Action.RESUME: _resume,
    Action.REJOIN: _rejoin,
}


