"""The one reader of /proc: process state, command line, working directory, children.

Standard library only and free of raftpg imports, because the fence process imports it and must
start small.
"""

import os


def _read(pid: int, name: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as file:
            return file.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    raw = _read(pid, "stat")
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
    raw = _read(pid, "cmdline")
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] if raw else []


def process_cwd(pid: int) -> str | None:
    """The working directory of pid, or None if it is gone or not ours to read."""
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(int(name))
            if fields is not None and len(fields) > 1 and fields[1] == str(pid):
                found.append(int(name))
    return sorted(found)
