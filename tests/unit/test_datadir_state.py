"""datadir on real files: data_dir_state's four states, whichever order they are checked in, and
the PID lock_file_pid reads from postmaster.pid (both read every HA cycle)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from raftpg.postgres.datadir import DataDirState, data_dir_state, lock_file_pid

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]


def _initialized(path: Path) -> None:
    (path / "global").mkdir(parents=True)
    (path / "PG_VERSION").write_text("15\n")
    (path / "global" / "pg_control").write_bytes(b"\0" * 8)


def _only_pg_version(path: Path) -> None:
    path.mkdir()
    (path / "PG_VERSION").write_text("15\n")


def _pg_control_a_directory(path: Path) -> None:
    (path / "global" / "pg_control").mkdir(parents=True)
    (path / "PG_VERSION").write_text("15\n")


def _a_file(path: Path) -> None:
    path.write_text("not a directory")


@pytest.mark.parametrize(
    ("make", "state"),
    [
        pytest.param(lambda path: None, DataDirState.MISSING, id="missing"),
        pytest.param(lambda path: path.mkdir(), DataDirState.EMPTY, id="empty"),
        pytest.param(_initialized, DataDirState.INITIALIZED, id="initialized"),
        pytest.param(_only_pg_version, DataDirState.INVALID, id="half-made"),
        pytest.param(_pg_control_a_directory, DataDirState.INVALID, id="pg_control-not-a-file"),
        pytest.param(_a_file, DataDirState.INVALID, id="a-file"),
    ],
)
def test_data_dir_state(tmp_path: Path, make: Callable[[Path], None], state: DataDirState) -> None:
    data_dir = tmp_path / "pgdata"
    make(data_dir)
    assert data_dir_state(data_dir) is state


@pytest.mark.parametrize(
    ("content", "pid"),
    [
        pytest.param(b"4242\n/var/lib/pgdata\n1733472000\n5432\n", 4242, id="a-server"),
        pytest.param(b"-4242\n/var/lib/pgdata\n", 4242, id="single-user-mode"),
        pytest.param(b"4242", 4242, id="no-newline"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\xff\xfe\n", None, id="garbage"),
        pytest.param(None, None, id="missing"),
    ],
)
def test_lock_file_pid(tmp_path: Path, content: bytes | None, pid: int | None) -> None:
    if content is not None:
        (tmp_path / "postmaster.pid").write_bytes(content)
    assert lock_file_pid(tmp_path) == pid
