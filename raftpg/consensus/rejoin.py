"""Rejoining with a wiped Raft log: the marker that keeps a replica out of elections until it has
the cluster's log (replica.py says why that matters)."""

from __future__ import annotations

import os
from pathlib import Path

from raftpg.consensus.pysyncobj_internals import meta_file
from raftpg.consensus.settings import DUMP_FILE, JOURNAL_FILE

MARKER = "rejoining"
_LOG_FILES = (JOURNAL_FILE, meta_file(Path(JOURNAL_FILE)).name, DUMP_FILE)


def has_log(data_dir: Path) -> bool:
    return any((data_dir / name).exists() for name in _LOG_FILES)


def wipe_and_mark(data_dir: Path) -> list[Path]:
    """Delete this replica's Raft log and mark it as rejoining. The caller holds the data
    directory's lock (no daemon running). Marker first: a crash in between leaves a replica that
    still holds back, never one that stands with a half-wiped log."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    marker = data_dir / MARKER
    marker.write_text("this replica's Raft log was wiped: it stands for election once it has the cluster's log\n")
    os.chmod(marker, 0o600)
    removed = []
    for name in _LOG_FILES:
        path = data_dir / name
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def pending(data_dir: Path) -> bool:
    return (data_dir / MARKER).exists()


def done(data_dir: Path) -> None:
    (data_dir / MARKER).unlink(missing_ok=True)
