"""datadir.processes_in: what 'PostgreSQL is surely stopped' rests on (no process left on the data dir)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from raftpg.poll import wait_until
from raftpg.postgres import datadir

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def test_a_process_working_in_the_data_dir_is_found_until_it_exits(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert datadir.processes_in(data_dir) == []
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], cwd=data_dir)
    # A backend's process title, as an orphan of a killed postmaster would show it.
    backend = subprocess.Popen(["bash", "-c", 'exec -a "postgres: app app [local] idle" sleep 30'], cwd=data_dir)
    try:
        # until bash has exec'd into its new process title
        wait_until(lambda: datadir.processes_in(data_dir) == [backend.pid], 10, 0.01)
        assert datadir.processes_in(data_dir) == [backend.pid], "only PostgreSQL processes count"
        assert datadir.processes_in(tmp_path) == [], "only the exact directory counts"
    finally:
        for child in (other, backend):
            child.kill()
            child.wait(timeout=10)
    assert datadir.processes_in(data_dir) == []
