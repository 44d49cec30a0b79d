"""A small real file system to fill up: a tmpfs mounted for one test (root only; skips otherwise)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = "filler"
MOUNT_TIMEOUT = 10.0


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "1M") -> Iterator[Path]:
    """Mount a tmpfs of `size` on path for the block; skip the test where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True, timeout=MOUNT_TIMEOUT, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, timeout=MOUNT_TIMEOUT, check=False)


def fill(directory: Path) -> int:
    """Write a filler file until directory's file system is full; returns its size in bytes."""
    written = 0
    fd = os.open(directory / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for block in (1 << 16, 4096, 1):  # big blocks, then whatever the last one left free
            with contextlib.suppress(OSError):  # ENOSPC: on to smaller blocks
                while (count := os.write(fd, b"\0" * block)) == block:
                    written += count
                written += count
    finally:
        os.close(fd)
    return written


def free(directory: Path) -> None:
    """Give the filler's space back."""
    (directory / FILLER).unlink(missing_ok=True)
