"""The fence (DESIGN rule 2): stops PostgreSQL when the lease deadline passes unrenewed.

The fence is a separate small process in its own session, so it outlives the daemon: if
raftpg is killed, frozen, or its event loop or Raft thread is stuck, nobody feeds the fence
and it shuts the postmaster down (SIGQUIT = immediate shutdown; if the postmaster is
still there QUIT_GRACE later, SIGKILL of it and of every child, see kill.py). A restarted daemon
that renews in time finds the same fence through its pid file and feeds it, and nothing is
stopped.

Run: python -S -c "<protocol.START_CODE>" --run-dir DIR --postmaster-pid PID --deadline BOOTTIME
[--data-dir D] (`raftpg fence ...` in the single-file build; `python -m raftpg.fence.process`
works too). It runs on every primary for as long as it is primary, so it stays small: the
standard library modules a bare interpreter loads plus raftpg.fence: no argparse, logging,
pathlib or dataclasses (together about 5 MiB of RSS), no contextlib (with the collections and
functools it pulls in, 0.6 MiB: hence try/except where suppress() would do), no signal
(signals.py).
"""

import fcntl
import os
import select
import stat
import sys
import time
from types import FrameType

from raftpg.fence import signals
from raftpg.fence.kill import kill_postmaster_tree
from raftpg.fence.protocol import (
    FIFO_NAME,
    LOCK_NAME,
    LOG_NAME,
    MODULE,
    PID_NAME,
    POLL_INTERVAL,
    QUIT_GRACE,
    Deadline,
    Disarm,
    parse,
    record_text,
)
from raftpg.procfs import children_of, process_alive, process_cwd, start_time

_KILL_WAIT = 2.0
_OPTIONS = {"--run-dir", "--postmaster-pid", "--deadline", "--data-dir"}
_USAGE = f"usage: python -m {MODULE} --run-dir DIR --postmaster-pid PID --deadline BOOTTIME [--data-dir DIR]\n"


def _boottime() -> float:
    """The clock deadlines are written in (raftpg.clock's, not imported to stay small)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class _Log:
    """Timestamped lines appended to fence.log, one write() each."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.pid = os.getpid()

    def __call__(self, level: str, message: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        os.write(self.fd, f"{stamp},{int(now % 1 * 1000):03d} fence[{self.pid}] {level} {message}\n".encode())


class _Guarded:
    """A process the fence guards or kills, pinned by PID and start time."""

    __slots__ = ("pid", "started")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = start_time(pid)

    def alive(self) -> bool:
        return process_alive(self.pid) and start_time(self.pid) == self.started


class _Fence:
    def __init__(self, run_dir: str, guarded: _Guarded, deadline: float, log: _Log) -> None:
        self.run_dir = run_dir
        self.guarded = guarded
        self.deadline = deadline
        self.log = log

    def run(self) -> int:
        fifo = os.path.join(self.run_dir, FIFO_NAME)
        try:
            os.mkfifo(fifo, 0o600)
        except FileExistsError:
            pass
        if not stat.S_ISFIFO(os.stat(fifo).st_mode):
            self.log("ERROR", f"{fifo} is not a FIFO; not starting")
            return 2
        # O_RDWR: we are a writer too, so the FIFO never reports EOF when feeders go away.
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        record = record_text(os.getpid(), self.guarded.pid)
        pid_file = os.path.join(self.run_dir, PID_NAME)
        tmp = f"{pid_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as file:
            file.write(record)
        os.replace(tmp, pid_file)
        try:
            return self._loop(fd)
        finally:
            os.close(fd)
            _remove_if_ours(pid_file, record)

    def _loop(self, fd: int) -> int:
        pending = b""
        while True:
            if not self.guarded.alive():
                self.log("INFO", f"postmaster {self.guarded.pid} is gone; nothing left to guard, exiting")
                return 0
            remaining = self.deadline - _boottime()
            if remaining <= 0:
                self._fence(-remaining)
                return 0
            readable, _, _ = select.select([fd], [], [], min(remaining, POLL_INTERVAL))
            if not readable:
                continue
            try:
                pending += os.read(fd, 4096)
            except BlockingIOError:
                continue
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                message = parse(raw.decode(errors="replace"))
                if isinstance(message, Disarm):
                    self.log("INFO", "disarmed by raftpg; exiting without touching PostgreSQL")
                    return 0
                if isinstance(message, Deadline):
                    self.deadline = message.at
                else:
                    self.log("WARNING", f"ignoring unknown message {raw[:100]!r}")

    def _fence(self, overdue: float) -> None:
        pid = self.guarded.pid
        self.log(
            "ERROR",
            f"fencing: lease deadline passed {overdue:.2f}s ago without renewal; stopping PostgreSQL "
            f"(postmaster {pid}): SIGQUIT (immediate shutdown), SIGKILL after {QUIT_GRACE:.1f}s",
        )
        backends = [_Guarded(child) for child in children_of(pid)]
        try:
            os.kill(pid, signals.SIGQUIT)
        except ProcessLookupError:
            pass
        if _wait_gone(self.guarded, QUIT_GRACE):
            self.log("ERROR", f"fencing: postmaster {pid} exited on SIGQUIT")
        else:
            killed = kill_postmaster_tree(pid)
            self.log("ERROR", f"fencing: postmaster {pid} still there; SIGKILLed it and its children {killed[1:]}")
        # Whatever the postmaster did, no backend it had may live on as an orphan.
        for backend in backends:
            if backend.alive():
                kill_postmaster_tree(backend.pid)
                self.log("ERROR", f"fencing: SIGKILLed orphaned backend {backend.pid}")
        survivors = [proc.pid for proc in (self.guarded, *backends) if not _wait_gone(proc, _KILL_WAIT)]
        if survivors:
            self.log("CRITICAL", f"fencing: processes {survivors} are STILL ALIVE after SIGKILL")
        else:
            self.log("ERROR", f"fencing: postmaster {pid} and its {len(backends)} children are gone")


def _wait_gone(guarded: _Guarded, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while guarded.alive():
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True


def _remove_if_ours(pid_file: str, record: str) -> None:
    """Remove the pid file unless a successor has replaced it."""
    try:
        with open(pid_file) as file:
            if file.read() == record:
                os.unlink(pid_file)
    except FileNotFoundError:
        pass


class _Args:
    """The command line: --name value pairs, the first three required."""

    __slots__ = ("data_dir", "deadline", "postmaster_pid", "run_dir")

    def __init__(self, argv: list[str]) -> None:
        """Raises ValueError if an option is unknown, repeated, lacks its value or is missing."""
        pairs = dict(zip(argv[::2], argv[1::2], strict=False))
        if len(argv) % 2 or len(pairs) != len(argv) // 2 or not set(pairs) <= _OPTIONS:
            raise ValueError(argv)
        missing = _OPTIONS - {"--data-dir"} - set(pairs)
        if missing:
            raise ValueError(missing)
        self.run_dir = pairs["--run-dir"]
        self.postmaster_pid = int(pairs["--postmaster-pid"])
        self.deadline = float(pairs["--deadline"])
        self.data_dir = pairs.get("--data-dir")


def _refusal(guarded: _Guarded, data_dir: str | None) -> str | None:
    """Why this fence must not start, or None."""
    if not guarded.alive():
        return f"postmaster {guarded.pid} is not running; nothing to guard"
    if data_dir is not None:
        cwd = process_cwd(guarded.pid)
        if cwd is not None and cwd != os.path.realpath(data_dir):
            return f"process {guarded.pid} does not run on {data_dir}; not guarding it"
    return None


def main(argv: list[str]) -> int:
    try:
        args = _Args(argv)
    except ValueError:
        sys.stderr.write(_USAGE)
        return 2
    run_dir, pid, deadline = args.run_dir, args.postmaster_pid, args.deadline
    log = _Log(os.path.join(run_dir, LOG_NAME))

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        log("WARNING", f"terminated by signal {signum}; PostgreSQL is no longer fenced")
        raise SystemExit(0)

    signals.ignore(signals.SIGINT)
    signals.ignore(signals.SIGHUP)
    signals.handle(signals.SIGTERM, on_sigterm)

    lock_fd = os.open(os.path.join(run_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("ERROR", f"another fence is running in {run_dir}; not starting a second one")
        return 2
    guarded = _Guarded(pid)
    refusal = _refusal(guarded, args.data_dir)
    if refusal is not None:
        log("ERROR", refusal)
        return 1
    if os.getpgid(pid) != pid:
        log("WARNING", f"postmaster {pid} leads no process group (not started by pg_ctl?)")
    log("INFO", f"guarding postmaster {pid}, deadline in {deadline - _boottime():.2f}s (boottime {deadline:.3f})")
    return _Fence(run_dir, guarded, deadline, log).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
