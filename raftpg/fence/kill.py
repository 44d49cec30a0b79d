"""Killing a postmaster and every process it started, even when it is frozen.

Signalling the postmaster's process group is not enough: pg_ctl makes the postmaster a
session leader, but every child PostgreSQL forks calls setsid() too, so each backend leads its
own process group and a killpg() of the postmaster's group reaches the postmaster alone. A
backend left behind can still write WAL and acknowledge a commit. So the children are found
(by parent PID) and killed one by one, each with its own process group (which holds what it
spawned, e.g. an archive_command). The postmaster is SIGSTOPped first so it can neither fork
new children nor die and leave orphans we could no longer find by their parent.

Also the /proc readers the fence and its client need. The fence process imports this, so it
keeps to small modules (see protocol.py).
"""

import contextlib
import os
import signal
import time

_STOP_WAIT = 0.05


def _read_proc(pid: int, name: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as file:
            return file.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    raw = _read_proc(pid, "stat")
    if raw is None:
        return None
    # "pid (comm) S ppid ...": comm may contain spaces and parentheses; split after the last ')'.
    text = raw.decode(errors="replace")
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    """Kernel start time of pid (field 22 of /proc/<pid>/stat): tells a reused PID apart."""
    fields = stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def process_alive(pid: int) -> bool:
    """True if pid is a live process; a zombie (killed but not yet reaped) counts as dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = stat_fields(pid)
    return fields is not None and len(fields) > 0 and fields[0] not in ("Z", "X")


def process_cmdline(pid: int) -> list[str]:
    raw = _read_proc(pid, "cmdline")
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] if raw else []


def children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(int(name))
            if fields is not None and len(fields) > 1 and fields[1] == str(pid):
                found.append(int(name))
    return sorted(found)


def _kill_with_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)


def kill_postmaster_tree(pid: int) -> list[int]:
    """SIGKILL the postmaster, all its children and their process groups; returns the PIDs hit."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)
    end = time.monotonic() + _STOP_WAIT
    while time.monotonic() < end:
        fields = stat_fields(pid)
        if fields is None or fields[0] in "TtZX":
            break
        time.sleep(0.002)
    killed: list[int] = []
    for _ in range(2):  # a second pass catches a child forked while the stop was arriving
        for child in children_of(pid):
            if child not in killed:
                _kill_with_group(child)
                killed.append(child)
    _kill_with_group(pid)
    return [pid, *killed]
