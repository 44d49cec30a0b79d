"""Where `raftpg ctl rolling-restart` keeps its run: the `rolling_restart` operation record in Raft,
read and written over the members' REST APIs (GET/PUT /operations/rolling_restart).

Every write is a compare-and-set on the revision this ctl last saw, so a ctl that another one took
over learns it at its next write (409) and stops. A write goes to any member that answers: with
--daemon the member ctl was talking to may be the one whose raftpg is being replaced.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raftpg.cli.ctl.client import CtlError, Unreachable, error_message, join
from raftpg.cli.ctl.model import ClusterView
from raftpg.cli.ctl.rolling_plan import HEARTBEAT_INTERVAL, RunState
from raftpg.cli.ctl.session import Session

PATH = "operations/rolling_restart"
WRITE_TIMEOUT = 15.0
"""A write commits through Raft: it may wait for a Raft leader (the member's retry_timeout)."""


class TakenOver(CtlError):
    """Another ctl changed the record since this one last wrote it."""


@dataclass(frozen=True)
class Stored:
    revision: int
    record: Mapping[str, Any] | None

    @staticmethod
    def from_json(body: Any) -> Stored:
        if not isinstance(body, Mapping) or not isinstance(body.get("revision"), int):
            raise CtlError(f"GET /{PATH} did not answer {{revision, record}}: {body!r} (a raftpg too old?)")
        record = body.get("record")
        return Stored(body["revision"], record if isinstance(record, Mapping) else None)

    def state(self) -> RunState | None:
        """The run in progress; CtlError for a record this ctl cannot read (another version)."""
        if self.record is None:
            return None
        state = RunState.from_record(self.record)
        if state is None:
            raise CtlError(f"the rolling restart in progress was recorded by another raftpg version "
                           f"({dict(self.record)}); finish it with that version, or drop the record with "
                           "`raftpg ctl rolling-restart --abandon`")
        return state


class RunRecord:
    """The run's record as this ctl last read or wrote it, and its revision."""

    def __init__(self, session: Session, wall_clock: Callable[[], float] = time.time) -> None:
        self.session = session
        self.clock = wall_clock
        self.revision = 0
        self.state: RunState | None = None
        self._urls: list[str] = []
        self._beaten = time.monotonic()

    def remember(self, cluster: ClusterView) -> None:
        """The members to fall back on when the one ctl talks to does not answer."""
        self._urls = [m.api_url for m in cluster.members if m.api_url]

    def urls(self) -> list[str]:
        return list(dict.fromkeys([*self.session.bases, *self._urls]))

    def read(self) -> Stored:
        """The record as stored; the next write expects its revision. `state` stays this ctl's
        own: it is set by writing (starting or taking over a run), never by reading."""
        stored = Stored.from_json(self.session.get(PATH).body)
        self.revision = stored.revision
        return stored

    def write(self, state: RunState | None) -> None:
        """Compare-and-set; TakenOver when the revision moved; CtlError when no member took it."""
        record = None if state is None else state.to_record()
        body = {"record": record, "expected_revision": self.revision}
        problems: list[str] = []
        for base in self.urls():
            url = join(base, PATH)
            try:
                answer = self.session.client.request("PUT", url, body, timeout=WRITE_TIMEOUT)
            except Unreachable as exc:
                problems.append(str(exc))
                continue
            if answer.status == 200 or (answer.status == 409 and self._landed(answer.body, record)):
                self.revision += 1
                self.state = state
                self._beaten = time.monotonic()
                return
            if answer.status == 409:
                raise TakenOver(_moved(answer.body, self.clock()))
            problems.append(f"{url}: HTTP {answer.status}: {error_message(answer.body, answer.status)}")
            if answer.status < 500:
                break
        raise CtlError("could not store the rolling restart's progress in the cluster:\n  " + "\n  ".join(problems))

    def _landed(self, body: Any, record: Mapping[str, Any] | None) -> bool:
        """A write whose answer was lost (or a 5xx with an unknown outcome) may have committed: the
        409 of the next attempt then shows exactly it, one revision on."""
        return isinstance(body, Mapping) and body.get("revision") == self.revision + 1 and body.get("record") == record

    def beat(self, step: str | None = None) -> None:
        """Say the run is alive (during long waits, at most every HEARTBEAT_INTERVAL seconds).
        Only a take-over stops the run; a member that does not answer now does not."""
        if self.state is None or (step is None and time.monotonic() - self._beaten < HEARTBEAT_INTERVAL):
            return
        self._beaten = time.monotonic()
        state = self.state.beat(self.clock(), step)
        if step is not None:
            self.write(state)
            return
        try:
            self.write(state)
        except TakenOver:
            raise
        except CtlError:
            return

    def release(self, why: str) -> None:
        """This ctl stops (an error, ^C): say so in the record, so the next run continues at once.
        Best effort: if it does not get through, the heartbeat ages out instead."""
        if self.state is None:
            return
        with contextlib.suppress(CtlError):
            self.write(self.state.halt(why.splitlines()[0] if why else "stopped"))


def _moved(body: Any, now: float) -> str:
    try:
        state = Stored.from_json(body).state()
    except CtlError:
        state = None
    who = state.describe(now) if state is not None else "the run was ended"
    return f"another ctl took this rolling restart over ({who}); this one stops here"


def in_progress(session: Session, now: float) -> str | None:
    """A line for `ctl list` when a rolling restart is in progress; None when none is."""
    try:
        state = Stored.from_json(session.get(PATH).body).state()
    except CtlError:
        return None
    return None if state is None else state.describe(now)
