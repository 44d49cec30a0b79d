"""Can the OS user the cluster runs as (postgres) start this Python and import raftpg?

`raftpg demo` started as root runs its nodes as postgres. With the interpreter in a home directory
only root may enter (pyenv under /root), every node would die with a PermissionError; this says
so in one line, with the directories to open, before anything starts.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import raftpg
from raftpg.cli.self_exec import independent_environment, raftpg_command

PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class Identity:
    uid: int
    gids: frozenset[int]


def identity(user: str) -> Identity:
    entry = pwd.getpwnam(user)
    return Identity(entry.pw_uid, frozenset(os.getgrouplist(user, entry.pw_gid)))


def may_search(mode: int, owner: int, group: int, who: Identity) -> bool:
    """Whether `who` may traverse a directory with this mode and ownership (no ACLs)."""
    if who.uid == 0:
        return True
    if who.uid == owner:
        return bool(mode & stat.S_IXUSR)
    if group in who.gids:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


def blocked_directories(paths: Sequence[Path], who: Identity,
                        lookup: Callable[[Path], os.stat_result] = os.stat) -> list[Path]:
    """The directories on the way to `paths` that `who` cannot traverse, outermost first."""
    blocked: list[Path] = []
    for path in paths:
        for directory in reversed(path.parents):
            try:
                info = lookup(directory)
            except OSError:
                continue
            if not may_search(info.st_mode, info.st_uid, info.st_gid, who) and directory not in blocked:
                blocked.append(directory)
    return blocked


def explain(user: str, blocked: Sequence[Path], detail: str) -> str:
    """One line: what fails, and the two ways out."""
    where = " ".join(str(d) for d in blocked)
    fix = f"`chmod o+x {where}`" if blocked else "install raftpg where that user can read it"
    return (f"the cluster runs as {user!r}, which cannot run {sys.executable} with raftpg ({detail}); "
            f"fix: {fix}, or use the single-file build dist/raftpg (`make dist`)")


def check_runnable(user: str) -> str | None:
    """None if `user` can run this interpreter and import raftpg; else the one-line reason."""
    who = identity(user)
    targets = [Path(sys.executable), Path(sys.executable).resolve(), Path(raftpg.__file__).resolve()]
    blocked = blocked_directories(targets, who)
    try:
        done = subprocess.run(probe_command(), user=user, group=identity_gid(user),
                              env=independent_environment(os.environ),
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL, cwd="/")
    except PermissionError as exc:
        return explain(user, blocked, exc.strerror or "permission denied")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return explain(user, blocked, str(exc))
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return explain(user, blocked, lines[-1] if lines else f"exit code {done.returncode}")
    return None


def probe_command() -> list[str]:
    """What `user` must be able to run: the single file itself when frozen (it has no `-c`),
    else this interpreter importing raftpg."""
    if getattr(sys, "frozen", False):
        return [*raftpg_command(), "version"]
    return [sys.executable, "-c", "import raftpg.cli.main"]


def identity_gid(user: str) -> int:
    return pwd.getpwnam(user).pw_gid
