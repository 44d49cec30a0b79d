"""A fake watchdog device for tests: a FIFO that records what a real device would have seen.

Point `watchdog.device` at the FIFO and raftpg's Watchdog writes one line per event ("arm N",
"ping", "disarm"; see raftpg.ha.watchdog). The reader stamps each line with time.monotonic()
when it arrives, so a test can ask whether a real watchdog would have reset the host: whether,
while armed, two consecutive events (or the last one and now) were further apart than the
timeout. A raftpg process killed while armed leaves the device armed without pings, exactly as
the kernel would see it.

The reader keeps a write end of the FIFO open itself, so a writer that goes away is not an
end-of-file and the device survives a raftpg restart.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


@dataclass(frozen=True)
class FakeEvent:
    at: float  # time.monotonic() when the line was read
    kind: str  # "arm" | "ping" | "disarm"; any other line is kept verbatim
    timeout: int | None = None  # for "arm"

    @classmethod
    def parse(cls, line: str, at: float) -> FakeEvent:
        word, _, argument = line.strip().partition(" ")
        if word == "arm" and argument.isdigit():
            return cls(at, "arm", int(argument))
        if word in ("ping", "disarm") and not argument:
            return cls(at, word)
        return cls(at, line.strip())


def armed_gaps(events: Sequence[FakeEvent], until: float) -> list[tuple[float, int]]:
    """Every interval a real device would have had to survive: (length, timeout in effect).

    An "arm" while armed changes the timeout and counts as a ping (WDIOC_SETTIMEOUT pings);
    a device still armed at the end contributes the interval up to `until`.
    """
    gaps: list[tuple[float, int]] = []
    timeout: int | None = None
    last = 0.0
    for event in events:
        if event.kind not in ("arm", "ping", "disarm"):
            continue
        if timeout is not None:
            gaps.append((event.at - last, timeout))
        if event.kind == "arm":
            timeout = event.timeout
        elif event.kind == "disarm":
            timeout = None
        last = event.at
    if timeout is not None:
        gaps.append((until - last, timeout))
    return gaps


def would_have_fired(events: Sequence[FakeEvent], until: float, timeout: float | None = None) -> bool:
    """Whether a real watchdog would have reset the host (`timeout` overrides the armed one)."""
    return any(length > (limit if timeout is None else timeout) for length, limit in armed_gaps(events, until))


class FakeWatchdogDevice:
    """Creates the FIFO at `path` (owned by `uid` if given) and records lines in a thread."""

    def __init__(self, path: Path, *, uid: int | None = None) -> None:
        self.path = path
        os.mkfifo(path, 0o600)
        if uid is not None:
            os.chown(path, uid, -1)
        self._events: list[FakeEvent] = []
        self._changed = threading.Condition()
        self._read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._keep_fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._read, name=f"fake-watchdog {path.name}", daemon=True)
        self._thread.start()

    def __enter__(self) -> FakeWatchdogDevice:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @property
    def events(self) -> tuple[FakeEvent, ...]:
        with self._changed:
            return tuple(self._events)

    @property
    def pings(self) -> tuple[float, ...]:
        return tuple(event.at for event in self.events if event.kind == "ping")

    @property
    def armed(self) -> bool:
        return self.timeout is not None

    @property
    def timeout(self) -> int | None:
        """The timeout in effect now, None while disarmed."""
        timeout: int | None = None
        for event in self.events:
            if event.kind == "arm":
                timeout = event.timeout
            elif event.kind == "disarm":
                timeout = None
        return timeout

    def wait_for(self, condition: Callable[[tuple[FakeEvent, ...]], bool], timeout: float) -> bool:
        """Block until `condition(events)` holds; False if `timeout` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(tuple(self._events)), timeout)

    def would_have_fired(self, timeout: float | None = None, until: float | None = None) -> bool:
        """Whether a real device would have reset the host by `until` (default: now)."""
        return would_have_fired(self.events, time.monotonic() if until is None else until, timeout)

    def longest_gap(self, until: float | None = None) -> float:
        """The longest armed interval without a ping so far, 0.0 if never armed."""
        gaps = armed_gaps(self.events, time.monotonic() if until is None else until)
        return max((length for length, _ in gaps), default=0.0)

    def close(self) -> None:
        """Stop reading and remove the FIFO; a writer still attached then gets EPIPE."""
        if self._stop_w < 0:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._read_fd, self._keep_fd, self._stop_r, self._stop_w):
            os.close(fd)
        self._stop_w = -1
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _read(self) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([self._read_fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                chunk = os.read(self._read_fd, 4096)
            except BlockingIOError:
                continue
            now = time.monotonic()
            *lines, pending = (pending + chunk).split(b"\n")
            if lines:
                with self._changed:
                    self._events.extend(FakeEvent.parse(line.decode(errors="replace"), now) for line in lines)
                    self._changed.notify_all()
