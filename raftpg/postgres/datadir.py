"""The data directory on disk: what is in it, who runs on it, and moving it aside.

Everything here is a few syscalls on local files; nothing blocks for long.
"""

import enum
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from raftpg.procfs import process_alive, process_cmdline, stat_fields

logger = logging.getLogger(__name__)


class DataDirState(enum.Enum):
    MISSING = "missing"
    EMPTY = "empty"
    INITIALIZED = "initialized"  # PG_VERSION and global/pg_control exist
    INVALID = "invalid"  # something else: a half-made or foreign directory


def data_dir_state(data_dir: Path) -> DataDirState:
    """Read every HA cycle: the usual answer, INITIALIZED, costs two stat calls and no listing."""
    if os.path.isfile(os.path.join(data_dir, "PG_VERSION")) \
            and os.path.isfile(os.path.join(data_dir, "global", "pg_control")):
        return DataDirState.INITIALIZED
    if not data_dir.exists():
        return DataDirState.MISSING
    if not data_dir.is_dir():
        return DataDirState.INVALID
    if not any(data_dir.iterdir()):
        return DataDirState.EMPTY
    return DataDirState.INVALID


def process_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None if there is no such process."""
    fields = stat_fields(pid)
    return fields[0] if fields else None


def lock_file_pid(data_dir: Path) -> int | None:
    """The PID recorded in postmaster.pid, alive or not (its first line; read every HA cycle)."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid"), "rb") as lock_file:
            first = lock_file.readline()
        return abs(int(first))  # negative in single-user mode
    except (FileNotFoundError, ValueError):
        return None


def postmaster_pid(data_dir: Path) -> int | None:
    """PID of the live postmaster running on data_dir, from postmaster.pid.

    A stale file (crash) or a reused PID is rejected: the process must be alive and have the
    data directory as its working directory (the postmaster chdirs there).
    """
    pid = lock_file_pid(data_dir)
    if pid is None or not process_alive(pid):
        return None
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except PermissionError:
        cmdline = process_cmdline(pid)
        return pid if cmdline and "postgres" in cmdline[0] else None
    except (FileNotFoundError, ProcessLookupError):
        return None
    return pid if os.path.realpath(data_dir) == cwd else None


def processes_in(data_dir: Path) -> list[int]:
    """Live PostgreSQL processes (named postgres or postmaster, as the server's children all are)
    whose working directory is data_dir: the postmaster and its children all chdir there, so an
    empty list with no live postmaster means PostgreSQL is surely stopped — no orphaned backend
    of a killed postmaster is left that could still finish a commit."""
    target = os.path.realpath(data_dir)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd != target or not process_alive(int(entry.name)):
            continue
        cmdline = process_cmdline(int(entry.name))
        if cmdline and ("postgres" in cmdline[0] or "postmaster" in cmdline[0]):
            found.append(int(entry.name))
    return sorted(found)


def programs_writing(data_dir: Path, program: str) -> list[int]:
    """Live processes of `program` (pg_basebackup, pg_rewind) whose command line names data_dir,
    e.g. an orphan a killed raftpg left behind, still writing there."""
    target = str(data_dir).rstrip("/")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = process_cmdline(int(entry.name))
        if argv and argv[0].endswith(program) and any(arg.rstrip("/") == target for arg in argv[1:]):
            found.append(int(entry.name))
    return sorted(found)


def move_aside(data_dir: Path, now: datetime | None = None) -> Path:
    """Rename data_dir to '<data_dir>.<UTC timestamp>.moved'; data is never deleted."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = data_dir.with_name(f"{data_dir.name}.{stamp}.moved")
    counter = 1
    while target.exists():
        target = data_dir.with_name(f"{data_dir.name}.{stamp}-{counter}.moved")
        counter += 1
    data_dir.rename(target)
    logger.warning("moved data directory %s aside to %s", data_dir, target)
    return target
