"""Killing a postmaster and every process it started, even when it is frozen.

Signalling the postmaster's process group is not enough: pg_ctl makes the postmaster a
session leader, but every child PostgreSQL forks calls setsid() too, so each backend leads its
own process group and a killpg() of the postmaster's group reaches the postmaster alone. A
backend left behind can still write WAL and acknowledge a commit. So the children are found
(by parent PID) and killed one by one, each with its own process group (which holds what it
spawned, e.g. an archive_command). The postmaster is SIGSTOPped first so it can neither fork
new children nor die and leave orphans we could no longer find by their parent.

The fence process imports this, so it keeps to small modules (see protocol.py); the /proc readers
it needs are raftpg.procfs, its signals fence/signals.py; no contextlib either (see process.py).
"""

import os
import time

from raftpg.fence import signals
from raftpg.procfs import children_of, stat_fields

_STOP_WAIT = 0.05


def _kill_with_group(pid: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signals.SIGKILL)
        os.kill(pid, signals.SIGKILL)
    except ProcessLookupError:
        pass


def kill_postmaster_tree(pid: int) -> list[int]:
    """SIGKILL the postmaster, all its children and their process groups; returns the PIDs hit."""
    try:
        os.kill(pid, signals.SIGSTOP)
    except ProcessLookupError:
        pass
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
