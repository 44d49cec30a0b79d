"""`raftpg ctl rolling-restart`: restart every member's PostgreSQL, one at a time, under pause.

Order: each replica (waiting until it streams again), a switchover to the best restarted replica,
then the old primary (a replica by then). With --daemon each member's raftpg process is replaced
too (rolling_daemon.py): a replica's after its PostgreSQL, the primary's before the
switchover. Pause keeps the HA loops from reacting to the planned stops; the one switchover is
the only write interruption. The run's plan and progress live in Raft (rolling_record.py), so
an interrupted run (^C, lost terminal, lost host) is continued by a second run from any host:
members whose postmaster start time changed since the run began are done.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from raftpg.cli.ctl.actions import POLL_INTERVAL
from raftpg.cli.ctl.client import CtlError, Unreachable
from raftpg.cli.ctl.formatting import dump_json, render_grid
from raftpg.cli.ctl.model import ClusterView, MemberView
from raftpg.cli.ctl.rolling_daemon import daemon_times, raftpg_started, restart_daemon
from raftpg.cli.ctl.rolling_plan import (
    Owner,
    RunState,
    alive_refusal,
    refusal,
    switchover_candidate,
    without_witnesses,
)
from raftpg.cli.ctl.rolling_record import RunRecord, TakenOver
from raftpg.cli.ctl.session import Session
from raftpg.poll import wait_until

SQL_TIMEOUT = 3
DEFAULT_MAX_LAG = 16 * 1024 * 1024


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


def _streaming(session: Session, cluster: ClusterView) -> dict[str, bool]:
    found = {}
    for member in cluster.members:
        if member.is_leader or not member.api_url:
            continue
        try:
            found[member.name] = streams(session, member)
        except CtlError:
            found[member.name] = False
    return found


def _member(session: Session, name: str) -> MemberView:
    member = session.cluster().member(name)
    if member is None:
        raise CtlError(f"{name} is no longer a member of the cluster")
    return member


# -- the steps ----------------------------------------------------------------------------------


def restart_member(run: Run, name: str, before: float | None) -> None:
    """POST /restart on the member, then wait until its postmaster is a new one and it streams."""
    session = run.session
    member = _member(session, name)
    try:
        response = session.send_to(member, "POST", "restart", {}, timeout=run.timeout)
    except Unreachable:
        response = None  # it may still be restarting: the wait below decides
    if response is not None and "done" not in response.message:
        raise CtlError(f"{name}: restart not carried out: {response.message}")

    def restarted() -> bool:
        current = _member(session, name)
        started = start_time(session, current)
        return started is not None and started != before and not current.is_leader and streams(session, current)

    run.wait(f"{name} to stream again after its restart", restarted)


def switch_over(run: Run, old: str, candidate: str) -> None:
    session = run.session
    with contextlib.suppress(Unreachable):  # the answer was lost: whether it happened is read back below
        session.send("POST", "switchover", {"leader": old, "candidate": candidate}, timeout=run.timeout)
    run.wait(f"{candidate} to hold the primary role", lambda: _leader_name(session) == candidate)


def _leader_name(session: Session) -> str | None:
    leader = session.cluster().leader
    return leader.name if leader is not None else None


def set_pause(run: Run, pause: bool) -> None:
    session = run.session
    session.send("PATCH", "config", {"pause": pause})
    members = session.cluster().members

    def everyone() -> bool:
        return all(session.member_status(m).get("pause", False) is pause for m in members)

    run.wait(f"every member to report pause={str(pause).lower()}", everyone)


# -- the command --------------------------------------------------------------------------------


def _healthy_or_refuse(run: Run, resuming: bool) -> ClusterView:
    """A new run is refused at once unless the cluster is healthy. A continued run only needs a
    primary (waited for): members it stopped on purpose (the old primary after the switchover,
    which stays down while paused) are what it is there to finish."""
    session = run.session
    if resuming:
        run.wait("a primary", lambda: session.cluster().leader is not None)
        return without_witnesses(session.cluster())
    cluster = without_witnesses(session.cluster())
    why = refusal(cluster, _streaming(session, cluster), run.max_lag)
    if why is not None:
        raise CtlError(f"rolling restart refused: {why}")
    return cluster


def _plan_rows(cluster: ClusterView, state: RunState, times: dict[str, float | None],
               daemons: dict[str, float | None] | None) -> list[list[str]]:
    """`daemons`: with --daemon, each member's current raftpg start time."""
    rows = []
    for name in sorted(state.started, key=lambda n: (n == state.old_primary, n)):
        done = "done" if state.restarted(name, times.get(name)) else "to do"
        daemon = "done" if daemons is not None and state.daemon_done(name, daemons.get(name)) else "to do"
        if name == state.old_primary:
            leader = cluster.leader
            moved = leader is not None and leader.name != name
            if daemons is not None:
                rows.append([name, "restart raftpg, keeping the lease", daemon])
            rows.append([name, "switchover to the best restarted replica", "done" if moved else "to do"])
            rows.append([name, "resume; PostgreSQL starts again as a replica", done])
        else:
            rows.append([name, "restart PostgreSQL", done])
            if daemons is not None:
                rows.append([name, "restart raftpg", daemon])
    return rows


def _new_state(session: Session, cluster: ClusterView, daemon: bool, owner: Owner, now: float) -> RunState:
    times = {m.name: start_time(session, m) for m in cluster.members}
    unknown = sorted(name for name, t in times.items() if t is None)
    if unknown:
        raise CtlError(f"rolling restart refused: cannot read the postmaster start time of {', '.join(unknown)} "
                       "(give -c NODE.yml so ctl can ask PostgreSQL)")
    assert cluster.leader is not None
    daemons = daemon_times(session, [m.name for m in cluster.members]) if daemon else {}
    return RunState(cluster.leader.name, {k: v for k, v in times.items() if v is not None}, daemons,
                    owner=owner, began_at=now, heartbeat_at=now)


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
        run.wait(f"{old} to stream from the new primary", lambda: streams(session, _member(session, old)))
        if not state.restarted(old, start_time(session, _member(session, old))):
            restart_member(run, old, state.started[old])

    run.step(old, "start again as a replica", rejoined)


def _owner() -> Owner:
    return Owner(socket.gethostname(), os.getpid())


def _show_status(run: Run, fmt: str) -> int:
    """--status: the run in progress as the record in Raft has it."""
    record = run.record
    stored = record.read()
    state = stored.state()
    if fmt == "json":
        run.session.print(dump_json({"revision": stored.revision,
                                     "record": None if state is None else state.to_record()}))
    elif state is None:
        run.session.print("No rolling restart in progress.")
    else:
        run.session.print(state.describe(record.clock()))
        for done in state.done:
            run.session.print(f"  done: {done}")
    return 0


def _abandon(run: Run, force: bool) -> int:
    """--abandon: forget a run that will not be finished (the cluster stays as it is)."""
    record = run.record
    state = record.read().state()
    if state is None:
        run.session.print("No rolling restart in progress.")
        return 0
    run.session.print(state.describe(record.clock()))
    run.session.confirm(force, "Forget this rolling restart (nothing is restarted or resumed)?")
    record.write(None)
    run.say("rolling restart forgotten; if the cluster is still paused, `raftpg ctl resume` ends the pause")
    return 0


def _continued(run: Run, state: RunState, args: argparse.Namespace) -> None:
    """A run in progress is continued only when its ctl looks gone (or with --take-over)."""
    why = alive_refusal(state, run.record.clock(), args.take_over)
    if why is not None and not args.dry_run:
        raise CtlError(f"rolling restart refused: {why}")
    if args.daemon != state.daemon:
        run.say(f"continuing the run in progress as it began, {'with' if state.daemon else 'without'} --daemon",
                "yellow")


def cmd_rolling_restart(session: Session, args: argparse.Namespace) -> int:
    run = Run(session, args)
    if args.status:
        return _show_status(run, args.format)
    if args.abandon:
        return _abandon(run, args.force)
    record = run.record
    state = record.read().state()
    resuming = state is not None
    if state is not None:
        _continued(run, state, args)
    cluster = _healthy_or_refuse(run, resuming)
    record.remember(cluster)
    if state is None:
        state = _new_state(session, cluster, args.daemon, _owner(), record.clock())
    times = {m.name: start_time(session, m) for m in cluster.members}
    daemons = {m.name: raftpg_started_quiet(session, m.name) for m in cluster.members} if state.daemon else None
    heading = f"Rolling restart of cluster {cluster.scope}"
    if resuming:
        heading += f" (continuing an interrupted run: {state.describe(record.clock())})"
    if not run.quiet or args.dry_run:
        session.print(render_grid(("Member", "Action", "Status"), _plan_rows(cluster, state, times, daemons), heading))
    if args.dry_run:
        return 0
    what = "PostgreSQL and raftpg" if state.daemon else "PostgreSQL"
    session.confirm(args.force, f"Pause cluster {cluster.scope} and restart every member's {what}?")
    record.write(state.taken_over(_owner(), record.clock()) if resuming else state)
    try:
        _drive(run, state, times)
    except TakenOver:
        raise
    except (CtlError, KeyboardInterrupt) as exc:
        record.release(str(exc) or type(exc).__name__)
        raise
    record.write(None)
    _summary(run, args.format)
    return 0


def _drive(run: Run, state: RunState, times: dict[str, float | None]) -> None:
    """The steps still to do, in order; each one re-checks what it finds."""
    session = run.session
    old = state.old_primary
    replicas = [n for n in sorted(state.started) if n != old]
    switched = _leader_name(session) != old
    to_do = not switched or any(not state.restarted(n, times.get(n)) for n in replicas)
    if to_do and not session.cluster().paused:
        run.step("cluster", "pause", functools.partial(set_pause, run, True))
    for name in replicas:
        if state.restarted(name, times.get(name)):
            run.skip(name, "restart PostgreSQL", "already restarted in this run")
        elif _member(session, name).is_leader:
            raise CtlError(f"{name} became the primary meanwhile (a failover?); the cluster stays paused")
        else:
            run.step(name, "restart PostgreSQL", functools.partial(restart_member, run, name, state.started[name]))
        if state.daemon:
            _daemon_step(run, state, name)
    if switched:
        run.skip(old, "switchover", f"{_leader_name(session)} is already the primary")
        if state.daemon and not state.daemon_done(old, raftpg_started_quiet(session, old)):
            run.say(f"{old}: its raftpg was not restarted (the primary moved before): restart it under "
                    "`raftpg ctl pause` (systemctl restart raftpg)", "yellow")
    else:
        if state.daemon:
            _daemon_step(run, state, old)
        _switchover_step(run, state)
    if session.cluster().paused:
        run.step("cluster", "resume", functools.partial(set_pause, run, False))
    if state.restarted(old, start_time(session, _member(session, old))):
        run.skip(old, "start again as a replica", "already restarted in this run")
    else:
        _old_primary_step(run, state)


def _summary(run: Run, fmt: str) -> None:
    total = time.monotonic() - run.began
    if fmt == "json":
        run.session.print(dump_json({
            "total_seconds": round(total, 3),
            "steps": [{"member": s.member, "action": s.action,
                       "took_seconds": None if s.took is None else round(s.took, 3)} for s in run.steps],
        }))
        return
    rows = [[s.member, s.action, "skipped" if s.took is None else f"{s.took:.1f}s"] for s in run.steps]
    run.session.print(render_grid(("Member", "Action", "Took"), rows, f"Rolling restart done in {total:.1f}s"))


def register(verbs: Any, verb: Callable[[Any, str, Any, str], argparse.ArgumentParser]) -> None:
    p = verb(verbs, "rolling-restart", cmd_rolling_restart,
             "restart every member's PostgreSQL in turn under pause, with one switchover")
    p.add_argument("--daemon", action="store_true",
                   help="also restart each member's raftpg process (to run a binary replaced on disk); the "
                        "primary's keeps its lease; needs a supervisor that starts raftpg again (systemd unit)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("--take-over", action="store_true",
                   help="continue a run in progress even though its ctl still seems to drive it (its "
                        "heartbeat in the record is recent); that ctl stops at its next step")
    p.add_argument("--status", action="store_true", help="show the run in progress, if any, and change nothing")
    p.add_argument("--abandon", action="store_true",
                   help="forget the run in progress without finishing it (nothing is restarted or resumed)")
    p.add_argument("-f", "--format", choices=("pretty", "json"), default="pretty",
                   help="pretty (progress and a table) or json (progress on stderr, summary on stdout)")
    p.add_argument("--max-lag", type=int, default=DEFAULT_MAX_LAG, metavar="BYTES",
                   help=f"refuse to start while a replica lags more than this (default {DEFAULT_MAX_LAG})")
    p.add_argument("--wait-timeout", type=float, default=180.0, metavar="SECONDS",
                   help="how long each step may take (default 180)")
