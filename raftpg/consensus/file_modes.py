"""The Raft data directory and its files are owner-only: journal and dump hold the whole cluster
state. pysyncobj creates them (and re-creates the dump at every compaction) with the process
umask, so the modes are fixed at start, at stop and, from the tick thread, every few seconds."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from raftpg.consensus.pysyncobj_internals import meta_file
from raftpg.consensus.settings import DUMP_FILE, JOURNAL_FILE

logger = logging.getLogger(__name__)

CHECK_EVERY = 2.0


def prepare_data_dir(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    fix_file_modes(data_dir)


def fix_file_modes(data_dir: Path) -> None:
    journal = data_dir / JOURNAL_FILE
    for path in (journal, meta_file(journal), data_dir / DUMP_FILE):
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        except FileNotFoundError:
            continue


class FileModeGuard:
    """Tick-thread callback; cheap, rate-limited, and never raises into pysyncobj."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._checked_at = 0.0

    def on_tick(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY:
            return
        self._checked_at = now
        try:
            fix_file_modes(self._data_dir)
        except OSError:
            logger.exception("cannot restrict permissions of Raft files in %s", self._data_dir)
