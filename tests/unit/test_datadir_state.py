"""datadir.data_dir_state on real files: the four states, whichever order they are checked in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from raftpg.postgres.datadir import DataDirState, data_dir_state

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
