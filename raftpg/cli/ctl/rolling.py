"""`raftpg ctl rolling-restart`: restart every member's PostgreSQL, one at a time, under pause.

Order (rolling_plan.plan): with --daemon each witness's raftpg first; each replica (waiting until
it streams again, with --daemon then its raftpg), with --daemon the primary's raftpg (keeping its
lease), a switchover to the best restarted replica, then the old primary (a replica by then).
Pause keeps the HA loops from reacting to the planned stops; the one switchover is the only write
interruption. The run's plan and progress live in Raft (rolling_record.py), so an interrupted run
(^C, lost terminal, lost host) is continued by a second run from any host: members whose
postmaster start time changed since the run began are done. The steps are rolling_steps.py's.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from raftpg.cli.ctl.client import CtlError
from raftpg.cli.ctl.formatting import dump_json, render_grid
from raftpg.cli.ctl.model import ClusterView
from raftpg.cli.ctl.rolling_daemon import daemon_times
from raftpg.cli.ctl.rolling_plan import (
    Action,
    Owner,
    Planned,
    RunState,
    alive_refusal,
    plan,
    refusal,
    without_witnesses,
    witness_in_raft,
    witnesses,
)
from raftpg.cli.ctl.rolling_record import TakenOver
from raftpg.cli.ctl.rolling_steps import Run, drive, raftpg_started_quiet, start_time, streaming_states
from raftpg.cli.ctl.session import Session

DEFAULT_MAX_LAG = 16 * 1024 * 1024


def _healthy_or_refuse(run: Run, resuming: bool, daemon: bool) -> ClusterView:
    """A new run is refused at once unless the cluster is healthy. A continued run only needs a
    primary (waited for): members it stopped on purpose (the old primary after the switchover,
    which stays down while paused) are what it is there to finish. Returns every member,
    witnesses included."""
    session = run.session
    if resuming:
        run.wait("a primary", lambda: session.cluster().leader is not None)
        return session.cluster()
    cluster = session.cluster()
    databases = without_witnesses(cluster)
    why = refusal(databases, streaming_states(session, databases), run.max_lag)
    if why is None and daemon:
        why = _witness_refusal(session, cluster)
    if why is not None:
        raise CtlError(f"rolling restart refused: {why}")
    return cluster


def _witness_refusal(session: Session, cluster: ClusterView) -> str | None:
    """--daemon replaces a witness's raftpg too, and every raftpg restart takes a Raft vote away
    for a while: a witness that does not vote now would make that the majority lost."""
    for name in witnesses(cluster):
        member = cluster.member(name)
        try:
            status = session.member_status(member, timeout=min(3.0, session.client.timeout)) if member else {}
        except CtlError as exc:
            return f"witness {name} does not answer ({exc}); with --daemon every Raft voter must be up"
        if not witness_in_raft(status):
            return (f"witness {name} is not running in Raft (state {status.get('state')}); with --daemon every "
                    "Raft voter must be up")
    return None


def _plan_rows(cluster: ClusterView, state: RunState, times: dict[str, float | None],
               daemons: dict[str, float | None] | None) -> list[list[str]]:
    """`daemons`: with --daemon, each member's current raftpg start time."""
    leader = cluster.leader
    moved = leader is not None and leader.name != state.old_primary

    def done(planned: Planned) -> bool:
        name = planned.member
        if planned.action in (Action.RESTART_POSTGRES, Action.REJOIN):
            return state.restarted(name, times.get(name))
        if planned.action is Action.SWITCHOVER:
            return moved
        return daemons is not None and state.daemon_done(name, daemons.get(name))

    return [[p.member, p.action.value, "done" if done(p) else "to do"]
            for p in plan(state) if p.action not in (Action.PAUSE, Action.RESUME)]


def _new_state(session: Session, cluster: ClusterView, daemon: bool, owner: Owner, now: float) -> RunState:
    """`cluster`: every member; the witnesses' raftpg is in the plan with --daemon only."""
    databases = without_witnesses(cluster).members
    times = {m.name: start_time(session, m) for m in databases}
    unknown = sorted(name for name, t in times.items() if t is None)
    if unknown:
        raise CtlError(f"rolling restart refused: cannot read the postmaster start time of {', '.join(unknown)} "
                       "(give -c NODE.yml so ctl can ask PostgreSQL)")
    assert cluster.leader is not None
    daemons = daemon_times(session, [m.name for m in databases] + list(witnesses(cluster))) if daemon else {}
    return RunState(cluster.leader.name, {k: v for k, v in times.items() if v is not None}, daemons,
                    owner=owner, began_at=now, heartbeat_at=now)


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
    cluster = _healthy_or_refuse(run, resuming, args.daemon if state is None else state.daemon)
    record.remember(cluster)
    if state is None:
        state = _new_state(session, cluster, args.daemon, _owner(), record.clock())
    databases = without_witnesses(cluster).members
    times = {m.name: start_time(session, m) for m in databases}
    daemons = {name: raftpg_started_quiet(session, name) for name in state.daemons} if state.daemon else None
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
        drive(run, state, times)
    except TakenOver:
        raise
    except (CtlError, KeyboardInterrupt) as exc:
        record.release(str(exc) or type(exc).__name__)
        raise
    record.write(None)
    _summary(run, args.format)
    return 0


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
