"""receiver_title: whether a standby that answers no query yet streams WAL, read from the process
title PostgreSQL gives its WAL receiver (set only once received WAL was flushed)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest

from raftpg.poll import wait_until
from raftpg.postgres.receiver_title import receiver_from_titles, streaming_receiver
from raftpg.procfs import children_of

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


@pytest.mark.parametrize(
    ("title", "flushed"),
    [
        pytest.param("postgres: walreceiver streaming 0/1F1080D0", 0x1F1080D0, id="streaming"),
        pytest.param("postgres: main: walreceiver streaming 1/A ", (1 << 32) | 0xA, id="with-cluster-name"),
        pytest.param("postgres: walreceiver", None, id="connecting"),
        pytest.param("postgres: walreceiver restarting at 0/3000000", None, id="restarting"),
        pytest.param("postgres: walreceiver idle", None, id="waiting-for-orders"),
        pytest.param("postgres: walsender replicator 10.0.0.1(5432) streaming 0/3000000", None, id="a-walsender"),
        pytest.param("postgres: startup recovering 000000010000000000000003", None, id="startup"),
    ],
)
def test_only_a_receiver_that_flushed_wal_counts_as_streaming(title: str, flushed: int | None) -> None:
    receiver = streaming_receiver([title])
    if flushed is None:
        assert receiver is None
    else:
        assert receiver is not None and receiver.streaming and receiver.flushed_lsn == flushed


def test_the_titles_of_the_postmasters_children_are_read() -> None:
    """A stand-in postmaster (bash) with one child titled as a streaming WAL receiver."""
    parent = subprocess.Popen(["bash", "-c", 'exec -a "postgres: walreceiver streaming 0/5000060" sleep 30 & wait'])
    try:
        assert wait_until(lambda: receiver_from_titles(parent.pid) is not None, 10, 0.01)
        receiver = receiver_from_titles(parent.pid)
        assert receiver is not None and receiver.flushed_lsn == 0x5000060
        [child] = children_of(parent.pid)
        assert receiver_from_titles(child) is None  # the child has no children
    finally:
        for pid in children_of(parent.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait(timeout=10)
