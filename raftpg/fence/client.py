"""The daemon's side of the fence: start it, feed it new deadlines, disarm it.

State lives in the run directory (pid file, FIFO, lock), so a restarted daemon finds and feeds
the fence its predecessor started instead of starting a second one.
"""

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from raftpg.clock import boottime
from raftpg.fence.protocol import (
    FIFO_NAME,
    LOG_NAME,
    PID_NAME,
    START_CODE,
    SUBCOMMAND,
    Deadline,
    Disarm,
    Message,
    encode,
    is_fence_cmdline,
)
from raftpg.postgres.errors import PostgresError
from raftpg.procfs import process_alive, process_cmdline

logger = logging.getLogger(__name__)


class FenceError(PostgresError):
    """The fence process could not be started or stopped."""


@dataclass(frozen=True)
class FenceRecord:
    """The fence's pid file: which fence runs in a run directory and which postmaster it guards."""

    pid: int
    postmaster_pid: int


def read_record(run_dir: Path) -> FenceRecord | None:
    try:
        data = json.loads((run_dir / PID_NAME).read_text())
        return FenceRecord(int(data["pid"]), int(data["postmaster_pid"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def fence_command() -> list[str]:
    """How to start the fence: the single-file build runs itself with the hidden `fence`
    subcommand; otherwise the same interpreter runs the fence's main (START_CODE says why not
    `-m`), without site (-S: .pth files cost the fence up to 4 MiB of its 10 MiB; it needs only
    the standard library and raftpg, found through PYTHONPATH, see _fence_environment)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, SUBCOMMAND]
    return [sys.executable, "-S", "-c", START_CODE]


def _fence_environment() -> dict[str, str]:
    if getattr(sys, "frozen", False):
        return dict(os.environ)
    package_root = Path(__file__).resolve().parents[2]  # the directory holding raftpg/
    return {**os.environ, "PYTHONPATH": str(package_root)}


class FenceClient:
    """Starts, feeds and disarms the fence of one data directory."""

    def __init__(self, run_dir: Path, data_dir: Path | None = None, *, start_timeout: float = 5.0) -> None:
        self.run_dir = run_dir.absolute()
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self._child: subprocess.Popen[bytes] | None = None

    def _live(self) -> FenceRecord | None:
        self._reap()
        record = read_record(self.run_dir)
        return record if record is not None and self._is_fence(record.pid) else None

    def _is_fence(self, pid: int) -> bool:
        return process_alive(pid) and is_fence_cmdline(process_cmdline(pid), str(self.run_dir))

    def pid(self) -> int | None:
        record = self._live()
        return record.pid if record is not None else None

    def guarded_pid(self) -> int | None:
        record = self._live()
        return record.postmaster_pid if record is not None else None

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
        return self._send(Deadline(deadline))

    async def disarm(self, timeout: float = 5.0) -> None:
        """Make the fence exit without touching PostgreSQL; SIGTERM it if it does not listen."""
        live = self._live()
        if live is None:
            return
        if self._send(Disarm()) and await self._wait_exit(live.pid, timeout):
            logger.info("fence %d disarmed", live.pid)
            return
        logger.warning("fence %d did not take 'disarm'; sending SIGTERM", live.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(live.pid, signal.SIGTERM)
        if not await self._wait_exit(live.pid, timeout):
            raise FenceError(f"fence {live.pid} survived SIGTERM")

    def _send(self, message: Message) -> bool:
        try:
            fd = os.open(self.run_dir / FIFO_NAME, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENXIO):
                raise
            logger.warning("no fence listens on %s", self.run_dir / FIFO_NAME)
            return False
        try:
            os.write(fd, encode(message))
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
            *fence_command(),
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
            record = read_record(self.run_dir)
            if record is not None and record.pid == child.pid:
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
                env=_fence_environment(),
                start_new_session=True,
            )

    async def _wait_exit(self, pid: int, timeout: float) -> bool:
        """Wait until pid (a fence a moment ago) has exited; an exiting process drops its command
        line before it is gone, so liveness is what counts here."""
        end = boottime() + timeout
        while process_alive(pid):
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
