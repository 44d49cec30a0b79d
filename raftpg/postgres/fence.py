"""The fence (DESIGN rule 2): stops PostgreSQL when the lease deadline passes unrenewed.

The fence is a separate small process in its own session, so it outlives the daemon: if
raftpg is killed, frozen, or its event loop or Raft thread is stuck, nobody feeds the fence
and it shuts the postmaster down (SIGQUIT = immediate shutdown; if the postmaster is
still there 0.3 s later, SIGKILL of it and of every child, see kill.py). A restarted daemon
that renews in time finds the same fence through its pid file and feeds it, and nothing is
stopped.

Protocol, over the FIFO <run_dir>/fence.fifo, one line per message (each write is atomic,
being shorter than PIPE_BUF): "deadline <CLOCK_BOOTTIME seconds>" replaces the deadline (the
newest message wins); "disarm" makes the fence exit without touching PostgreSQL.

Run: python -m raftpg.postgres.fence --run-dir DIR --postmaster-pid PID --deadline BOOTTIME
[--data-dir D]. This module imports only the standard library and small raftpg modules so the
fence starts fast and stays small.
"""

import argparse
import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from raftpg.clock import boottime
from raftpg.postgres.datadir import process_alive, process_cmdline
from raftpg.postgres.errors import PostgresError
from raftpg.postgres.kill import children_of, kill_postmaster_tree, stat_fields

logger = logging.getLogger(__name__)

FIFO_NAME = "fence.fifo"
PID_NAME = "fence.pid"
LOCK_NAME = "fence.lock"
LOG_NAME = "fence.log"
MODULE = "raftpg.postgres.fence"

_POLL_INTERVAL = 0.2  # how soon a vanished postmaster is noticed
_QUIT_GRACE = 0.3  # SIGQUIT -> SIGKILL
_KILL_WAIT = 2.0


class FenceError(PostgresError):
    """The fence process could not be started or stopped."""


# ---------------------------------------------------------------------------------------------
# The fence process


def _start_time(pid: int) -> str | None:
    """Kernel start time of pid (field 22 of /proc/<pid>/stat): tells a reused PID apart."""
    fields = stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


@dataclass(frozen=True)
class _Guarded:
    """The postmaster the fence guards, pinned by PID and start time."""

    pid: int
    started: str | None

    def alive(self) -> bool:
        return process_alive(self.pid) and _start_time(self.pid) == self.started


def _parse_message(line: str) -> float | str | None:
    """A new deadline, "disarm", or None for a line we do not understand."""
    word, _, rest = line.strip().partition(" ")
    if word == "disarm" and not rest:
        return "disarm"
    if word == "deadline":
        try:
            value = float(rest)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    return None


class _Fence:
    def __init__(self, run_dir: Path, guarded: _Guarded, deadline: float) -> None:
        self.run_dir = run_dir
        self.guarded = guarded
        self.deadline = deadline

    def run(self) -> int:
        fifo = self.run_dir / FIFO_NAME
        with contextlib.suppress(FileExistsError):
            os.mkfifo(fifo, 0o600)
        if not stat.S_ISFIFO(fifo.stat().st_mode):
            logger.error("%s is not a FIFO; not starting", fifo)
            return 2
        # O_RDWR: we are a writer too, so the FIFO never reports EOF when feeders go away.
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        _write_pid_file(self.run_dir, os.getpid(), self.guarded.pid)
        try:
            return self._loop(fd)
        finally:
            os.close(fd)
            _remove_pid_file(self.run_dir, os.getpid())

    def _loop(self, fd: int) -> int:
        pending = b""
        while True:
            if not self.guarded.alive():
                logger.info("postmaster %d is gone; nothing left to guard, exiting", self.guarded.pid)
                return 0
            remaining = self.deadline - boottime()
            if remaining <= 0:
                self._fence(-remaining)
                return 0
            readable, _, _ = select.select([fd], [], [], min(remaining, _POLL_INTERVAL))
            if not readable:
                continue
            try:
                pending += os.read(fd, 4096)
            except BlockingIOError:
                continue
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                message = _parse_message(raw.decode(errors="replace"))
                if message == "disarm":
                    logger.info("disarmed by raftpg; exiting without touching PostgreSQL")
                    return 0
                if isinstance(message, float):
                    self.deadline = message
                else:
                    logger.warning("ignoring unknown message %r", raw[:100])

    def _fence(self, overdue: float) -> None:
        pid = self.guarded.pid
        logger.error(
            "fencing: lease deadline passed %.2fs ago without renewal; stopping PostgreSQL "
            "(postmaster %d): SIGQUIT (immediate shutdown), SIGKILL after %.1fs",
            overdue,
            pid,
            _QUIT_GRACE,
        )
        backends = [_Guarded(child, _start_time(child)) for child in children_of(pid)]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        if _wait_gone(self.guarded, _QUIT_GRACE):
            logger.error("fencing: postmaster %d exited on SIGQUIT", pid)
        else:
            killed = kill_postmaster_tree(pid)
            logger.error("fencing: postmaster %d still there; SIGKILLed it and its children %s", pid, killed[1:])
        # Whatever the postmaster did, no backend it had may live on as an orphan.
        for backend in backends:
            if backend.alive():
                kill_postmaster_tree(backend.pid)
                logger.error("fencing: SIGKILLed orphaned backend %d", backend.pid)
        survivors = [proc.pid for proc in (self.guarded, *backends) if not _wait_gone(proc, _KILL_WAIT)]
        if survivors:
            logger.critical("fencing: processes %s are STILL ALIVE after SIGKILL", survivors)
        else:
            logger.error("fencing: postmaster %d and its %d children are gone", pid, len(backends))


def _wait_gone(guarded: _Guarded, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while guarded.alive():
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True


def _write_pid_file(run_dir: Path, pid: int, postmaster_pid: int) -> None:
    tmp = run_dir / f"{PID_NAME}.{pid}.tmp"
    tmp.write_text(json.dumps({"pid": pid, "postmaster_pid": postmaster_pid}) + "\n")
    tmp.replace(run_dir / PID_NAME)


def _remove_pid_file(run_dir: Path, pid: int) -> None:
    info = _read_pid_file(run_dir)
    if info is not None and info.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / PID_NAME).unlink()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    logger.warning("terminated by signal %d; PostgreSQL is no longer fenced", signum)
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description="raftpg's PostgreSQL fence")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--postmaster-pid", type=int, required=True)
    parser.add_argument("--deadline", type=float, required=True, help="CLOCK_BOOTTIME seconds")
    parser.add_argument("--data-dir", type=Path, help="refuse to guard a postmaster running elsewhere")
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir
    logging.basicConfig(
        filename=run_dir / LOG_NAME,
        level=logging.INFO,
        format=f"%(asctime)s fence[{os.getpid()}] %(levelname)s %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)

    lock_fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        logger.error("another fence is running in %s; not starting a second one", run_dir)
        return 2
    pid = args.postmaster_pid
    guarded = _Guarded(pid, _start_time(pid))
    if not guarded.alive():
        logger.error("postmaster %d is not running; nothing to guard", pid)
        return 1
    if args.data_dir is not None:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd") != os.path.realpath(args.data_dir):
                logger.error("process %d does not run on %s; not guarding it", pid, args.data_dir)
                return 1
    if os.getpgid(pid) != pid:
        logger.warning("postmaster %d leads no process group (not started by pg_ctl?)", pid)
    remaining = args.deadline - boottime()
    logger.info("guarding postmaster %d, deadline in %.2fs (boottime %.3f)", pid, remaining, args.deadline)
    return _Fence(run_dir, guarded, args.deadline).run()


# ---------------------------------------------------------------------------------------------
# The daemon's side


@dataclass(frozen=True)
class _FenceInfo:
    pid: int
    postmaster_pid: int


def _read_pid_file(run_dir: Path) -> _FenceInfo | None:
    try:
        data = json.loads((run_dir / PID_NAME).read_text())
        return _FenceInfo(int(data["pid"]), int(data["postmaster_pid"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _is_fence_process(pid: int) -> bool:
    return process_alive(pid) and MODULE in process_cmdline(pid)


class FenceClient:
    """Starts, feeds and disarms the fence of one data directory (state lives in run_dir, so a
    restarted daemon finds the fence its predecessor started)."""

    def __init__(self, run_dir: Path, data_dir: Path | None = None, *, start_timeout: float = 5.0) -> None:
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self._child: subprocess.Popen[bytes] | None = None

    def _live(self) -> _FenceInfo | None:
        self._reap()
        info = _read_pid_file(self.run_dir)
        return info if info is not None and _is_fence_process(info.pid) else None

    def pid(self) -> int | None:
        info = self._live()
        return info.pid if info is not None else None

    def guarded_pid(self) -> int | None:
        info = self._live()
        return info.postmaster_pid if info is not None else None

    def is_armed(self) -> bool:
        return self._live() is not None

    async def arm(self, postmaster_pid: int, deadline: float) -> int:
        """Make sure a fence guards postmaster_pid with this deadline; returns the fence's PID.

        A live fence for the same postmaster is reused (fed); one guarding another postmaster
        is disarmed first.
        """
        live = self._live()
        if live is not None and live.postmaster_pid == postmaster_pid and self.feed(deadline):
            logger.info("reusing fence %d guarding postmaster %d", live.pid, postmaster_pid)
            return live.pid
        if live is not None:
            logger.warning("replacing fence %d (guarding postmaster %d)", live.pid, live.postmaster_pid)
            await self.disarm()
        return await self._spawn(postmaster_pid, deadline)

    def feed(self, deadline: float) -> bool:
        """Hand the fence a new deadline without ever blocking; False if no fence listens."""
        return self._send(f"deadline {deadline!r}\n")

    async def disarm(self, timeout: float = 5.0) -> None:
        """Make the fence exit without touching PostgreSQL; SIGTERM it if it does not listen."""
        live = self._live()
        if live is None:
            return
        if self._send("disarm\n") and await self._wait_exit(live.pid, timeout):
            logger.info("fence %d disarmed", live.pid)
            return
        logger.warning("fence %d did not take 'disarm'; sending SIGTERM", live.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(live.pid, signal.SIGTERM)
        if not await self._wait_exit(live.pid, timeout):
            raise FenceError(f"fence {live.pid} survived SIGTERM")

    def _send(self, message: str) -> bool:
        try:
            fd = os.open(self.run_dir / FIFO_NAME, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENXIO):
                raise
            logger.warning("no fence listens on %s", self.run_dir / FIFO_NAME)
            return False
        try:
            os.write(fd, message.encode())
        except BlockingIOError:
            logger.error("fence pipe is full: the fence is not reading")
            return False
        finally:
            os.close(fd)
        return True

    async def _spawn(self, postmaster_pid: int, deadline: float) -> int:
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fifo = self.run_dir / FIFO_NAME
        if fifo.exists() and not stat.S_ISFIFO(fifo.lstat().st_mode):
            fifo.unlink()
        with contextlib.suppress(FileExistsError):
            os.mkfifo(fifo, 0o600)
        argv = [
            sys.executable,
            "-m",
            MODULE,
            "--run-dir",
            str(self.run_dir),
            "--postmaster-pid",
            str(postmaster_pid),
            "--deadline",
            repr(deadline),
        ]
        if self.data_dir is not None:
            argv += ["--data-dir", str(self.data_dir)]
        child = await asyncio.to_thread(self._popen, argv)
        self._child = child
        end = boottime() + self.start_timeout
        while boottime() < end:
            info = _read_pid_file(self.run_dir)
            if info is not None and info.pid == child.pid:
                logger.info(
                    "fence %d started for postmaster %d, deadline in %.2fs",
                    child.pid,
                    postmaster_pid,
                    deadline - boottime(),
                )
                return child.pid
            if child.poll() is not None:
                log = self.run_dir / LOG_NAME
                raise FenceError(f"fence exited with {child.returncode} at start; see {log}")
            await asyncio.sleep(0.02)
        child.kill()
        raise FenceError(f"fence did not start within {self.start_timeout:.1f}s")

    def _popen(self, argv: list[str]) -> "subprocess.Popen[bytes]":
        # Popen, not asyncio: an asyncio subprocess transport kills its child when closed.
        # start_new_session: the fence must outlive the daemon and its terminal.
        with open(self.run_dir / LOG_NAME, "ab") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd="/",
                start_new_session=True,
            )

    async def _wait_exit(self, pid: int, timeout: float) -> bool:
        end = boottime() + timeout
        while _is_fence_process(pid):
            self._reap()
            if boottime() >= end:
                return False
            await asyncio.sleep(0.02)
        self._reap()
        return True

    def _reap(self) -> None:
        """Collect our fence child once it has exited, so no zombie is left behind."""
        if self._child is not None and self._child.poll() is not None:
            self._child = None


if __name__ == "__main__":
    sys.exit(main())
