"""`raftpg demo` as root: which directories keep the postgres user from this Python and raftpg."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from raftpg.devcluster.run_as import Identity, blocked_directories, check_runnable, explain, may_search

POSTGRES = Identity(uid=100, gids=frozenset({100, 200}))


def fake_stat(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((stat.S_IFDIR | mode, 0, 0, 2, uid, gid, 4096, 0, 0, 0))


@pytest.mark.parametrize(("mode", "owner", "group", "allowed"), [
    (0o700, 0, 0, False),  # /root
    (0o711, 0, 0, True),
    (0o750, 0, 200, True),  # through a supplementary group
    (0o705, 0, 200, False),  # group bits decide for a member of the group, not the other bits
    (0o700, 100, 0, True),  # its own directory
    (0o070, 100, 100, False),  # the owner bits decide for the owner
])
def test_may_search(mode: int, owner: int, group: int, allowed: bool) -> None:
    assert may_search(mode, owner, group, POSTGRES) is allowed


def test_root_may_search_anything() -> None:
    assert may_search(0o000, 1, 1, Identity(0, frozenset({0})))


def test_blocked_directories_lists_each_closed_directory_once_outermost_first() -> None:
    modes = {Path("/"): 0o755, Path("/root"): 0o700, Path("/root/.pyenv"): 0o755,
             Path("/root/.pyenv/bin"): 0o700, Path("/usr"): 0o755, Path("/usr/lib"): 0o755}

    def lookup(path: Path) -> os.stat_result:
        if path not in modes:
            raise FileNotFoundError(path)
        return fake_stat(modes[path])

    paths = [Path("/root/.pyenv/bin/python3"), Path("/root/.pyenv/bin/python3.11"), Path("/usr/lib/raftpg/x.py")]
    assert blocked_directories(paths, POSTGRES, lookup) == [Path("/root"), Path("/root/.pyenv/bin")]


def test_explain_is_one_line_naming_the_chmod_and_the_single_file_build() -> None:
    text = explain("postgres", [Path("/root"), Path("/root/.pyenv")], "Permission denied")
    assert "\n" not in text
    assert "chmod o+x /root /root/.pyenv" in text and "dist/raftpg" in text and "Permission denied" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as postgres")
def test_postgres_can_run_this_interpreter_here() -> None:
    """On this machine (and in CI) the interpreter is traversable by postgres."""
    assert check_runnable("postgres") is None
