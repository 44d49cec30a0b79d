"""An interrupted clone (68261a9): pg_basebackup runs with `<data_dir>.cloning` next to the data
directory; a later raftpg process that finds the marker stops an orphaned pg_basebackup still
writing there and moves the partial copy aside (never deletes it), so the member clones again.

Real processes and files; pg_basebackup is played by a stand-in whose command line names the
data directory the way the real one's does (`-D <data_dir>`), or by a script in a fake bin_dir.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftpg.config import Address, Auth, PostgresSettings
from raftpg.poll import wait_until
from raftpg.postgres import datadir
from raftpg.postgres.datadir import DataDirState
from raftpg.postgres.errors import PostgresError
from raftpg.postgres.instance import PostgresInstance

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

PROGRAM = "/usr/lib/postgresql/15/bin/pg_basebackup"


def instance(base: Path, bin_dir: Path | None = None) -> PostgresInstance:
    settings = PostgresSettings(
        listen=Address("127.0.0.1", 5432),
        connect_address=Address("127.0.0.1", 5432),
        data_dir=base / "pgdata",
        bin_dir=bin_dir or base / "bin",
        socket_dir=base,
        superuser=Auth("postgres", "su-secret"),
        replication=Auth("replicator", "repl-secret"),
        parameters={},
        pg_hba=(),
    )
    return PostgresInstance(settings, "node1")


@pytest.fixture
def orphan(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process titled pg_basebackup, writing into tmp_path/pgdata as far as its command line says."""
    data_dir = tmp_path / "pgdata"
    code = "import time; time.sleep(60)"
    process = subprocess.Popen(["bash", "-c", f'exec -a {PROGRAM} {sys.executable} -c "{code}" -D "$0" -X stream',
                                str(data_dir)])
    try:
        # until bash has exec'd under the new title
        assert wait_until(lambda: datadir.programs_writing(data_dir, "pg_basebackup") == [process.pid], 10, 0.01)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def partial_copy(data_dir: Path) -> None:
    """What pg_basebackup has written when it is stopped half-way: files, but no global/pg_control."""
    (data_dir / "base" / "1").mkdir(parents=True)
    (data_dir / "base" / "1" / "1259").write_bytes(b"\0" * 8192)
    (data_dir / "PG_VERSION").write_text("15\n")


def moved_aside(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("pgdata.*.moved"))


def test_programs_writing_finds_only_the_program_naming_that_directory(
        tmp_path: Path, orphan: subprocess.Popen[bytes]) -> None:
    data_dir = tmp_path / "pgdata"
    assert datadir.programs_writing(data_dir, "pg_basebackup") == [orphan.pid]
    assert datadir.programs_writing(Path(f"{data_dir}/"), "pg_basebackup") == [orphan.pid]  # trailing slash
    assert datadir.programs_writing(data_dir, "pg_rewind") == []
    assert datadir.programs_writing(tmp_path / "pgdat", "pg_basebackup") == []  # a prefix is another directory
    assert datadir.programs_writing(tmp_path, "pg_basebackup") == []


def test_an_orphaned_clone_is_stopped_and_its_partial_copy_moved_aside(
        tmp_path: Path, orphan: subprocess.Popen[bytes]) -> None:
    pg = instance(tmp_path)
    partial_copy(pg.data_dir)
    pg.clone_marker.touch()
    assert pg.clone_marker == tmp_path / "pgdata.cloning"

    assert pg.data_dir_state() is DataDirState.MISSING  # the next cycle clones again
    assert orphan.wait(timeout=10) == -9  # SIGKILLed: it can no longer write into a new clone
    assert not pg.clone_marker.exists()
    [moved] = moved_aside(tmp_path)
    assert (moved / "base" / "1" / "1259").stat().st_size == 8192  # renamed, nothing deleted
    assert pg.data_dir_state() is DataDirState.MISSING  # and only once


def test_a_clone_interrupted_before_it_wrote_anything_leaves_nothing_to_move(tmp_path: Path) -> None:
    pg = instance(tmp_path)
    pg.data_dir.mkdir()
    pg.clone_marker.touch()
    assert pg.data_dir_state() is DataDirState.EMPTY
    assert not pg.clone_marker.exists() and moved_aside(tmp_path) == []


def test_without_the_marker_a_foreign_directory_is_never_moved(tmp_path: Path) -> None:
    """Only the marker proves raftpg made the copy: anything else stays 'invalid', untouched."""
    pg = instance(tmp_path)
    partial_copy(pg.data_dir)
    assert pg.data_dir_state() is DataDirState.INVALID
    assert (pg.data_dir / "PG_VERSION").exists() and moved_aside(tmp_path) == []


def test_the_marker_exists_exactly_while_pg_basebackup_runs(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed clone removes its own partial copy and the marker: nothing is left to move aside."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    script = bin_dir / "pg_basebackup"
    script.write_text('#!/bin/sh\n[ -e "$CLONE_MARKER" ] && echo present > "$SEEN"\n'
                      'mkdir -p "$2/base" && echo 15 > "$2/PG_VERSION"\nexit 1\n')
    script.chmod(0o755)
    pg = instance(tmp_path, bin_dir)
    monkeypatch.setenv("CLONE_MARKER", str(pg.clone_marker))
    monkeypatch.setenv("SEEN", str(seen))

    with pytest.raises(PostgresError, match="pg_basebackup exited with 1"):
        asyncio.run(pg.basebackup(Address("127.0.0.1", 1), timeout=10))
    assert seen.read_text() == "present\n"
    assert not pg.clone_marker.exists()
    assert pg.data_dir_state() is DataDirState.MISSING and moved_aside(tmp_path) == []
