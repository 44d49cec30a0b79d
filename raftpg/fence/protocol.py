"""What the daemon and the fence share: file names in the run directory, the FIFO messages, the
pid file, the fence's reaction times (the lease margin must cover them) and how to recognise a
fence among processes.

Over <run_dir>/fence.fifo goes one line per message, each shorter than PIPE_BUF so every write
is atomic: "deadline <CLOCK_BOOTTIME seconds>" replaces the deadline (the newest wins);
"disarm" makes the fence exit without touching PostgreSQL. The fence process imports this, so
it keeps to modules `python -m` has loaded anyway (no dataclasses, json or pathlib: each
costs the fence about a MiB of RSS).
"""

import math

FIFO_NAME = "fence.fifo"
PID_NAME = "fence.pid"
LOCK_NAME = "fence.lock"
LOG_NAME = "fence.log"

MODULE = "raftpg.fence.process"
START_CODE = f"import sys; from {MODULE} import main; sys.exit(main(sys.argv[1:]))"
"""What `python -S -c` runs to start the fence: `-m` would load runpy, importlib.util, contextlib
and collections first, 0.9 MiB of the fence's 10."""
SUBCOMMAND = "fence"  # `raftpg fence ...` in the single-file build
# Fences started by earlier raftpg versions (`-m MODULE`, or this module before the fence package
# existed) speak the same protocol: a daemon upgraded in place must find and feed them, not try to
# start a second one beside them.
_LEGACY_MODULE = "raftpg.postgres.fence"

POLL_INTERVAL = 0.2  # how late the fence may notice a passed deadline or a vanished postmaster
QUIT_GRACE = 0.3  # SIGQUIT (immediate shutdown) -> SIGKILL of the whole tree


class Deadline:
    """Stop PostgreSQL at this CLOCK_BOOTTIME instant unless a later deadline arrives first."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Deadline) and other.at == self.at

    def __repr__(self) -> str:
        return f"Deadline({self.at!r})"


class Disarm:
    """Exit without touching PostgreSQL."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Disarm)

    def __repr__(self) -> str:
        return "Disarm()"


Message = Deadline | Disarm


def encode(message: Message) -> bytes:
    if isinstance(message, Disarm):
        return b"disarm\n"
    return f"deadline {message.at!r}\n".encode()


def parse(line: str) -> Message | None:
    """The message in one line, or None for a line we do not understand."""
    word, _, rest = line.strip().partition(" ")
    if word == "disarm" and not rest:
        return Disarm()
    if word == "deadline":
        try:
            value = float(rest)
        except ValueError:
            return None
        return Deadline(value) if math.isfinite(value) else None
    return None


def record_text(pid: int, postmaster_pid: int) -> str:
    """The pid file's content (a JSON object): which fence runs in this run directory and which
    postmaster it guards."""
    return f'{{"pid": {pid}, "postmaster_pid": {postmaster_pid}}}\n'


def is_fence_cmdline(cmdline: list[str], run_dir: str) -> bool:
    """True if this command line is a fence guarding run_dir (a reused PID is something else)."""
    started_as_fence = (START_CODE in cmdline or MODULE in cmdline or _LEGACY_MODULE in cmdline
                        or cmdline[1:2] == [SUBCOMMAND])
    return started_as_fence and run_dir in cmdline
