"""raftpg.procfs: the one /proc reader, checked against processes this test starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftpg.procfs import children_of, process_alive, process_cmdline, process_cwd, start_time, stat_fields

pytestmark = pytest.mark.unit


def test_a_child_is_seen_with_its_command_line_and_directory_and_not_after_it_is_reaped(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], cwd=tmp_path)
    try:
        assert child.pid in children_of(os.getpid())
        assert process_alive(child.pid)
        assert process_cmdline(child.pid)[-1] == "import time; time.sleep(30)"
        assert process_cwd(child.pid) == os.path.realpath(tmp_path)
        assert start_time(child.pid) is not None
    finally:
        child.kill()
        child.wait(timeout=10)
    assert not process_alive(child.pid)
    assert stat_fields(child.pid) is None
    assert process_cmdline(child.pid) == []
    assert process_cwd(child.pid) is None


def test_a_zombie_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        fields = stat_fields(child.pid)
        assert fields is not None and fields[0] == "Z"
        assert not process_alive(child.pid)
    finally:
        child.wait(timeout=10)


def test_no_process_zero() -> None:
    assert not process_alive(0)
