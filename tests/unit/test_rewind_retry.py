"""When a failed pg_rewind may be tried again (RewindFailure.blocks_retry), and when it never can."""

from __future__ import annotations

import pytest

from raftpg.ha.memory import REWIND_RETRY_INTERVAL, RewindFailure
from raftpg.postgres.rewind import RewindOutcome, RewindResult

pytestmark = pytest.mark.unit

AT = 1000.0


@pytest.mark.parametrize(
    ("unreachable", "holder", "version", "after", "blocked"),
    [
        (True, "node2", 7, 0.5, True),  # unreachable source: wait loop_wait (1 s)...
        (True, "node2", 7, 1.0, False),  # ...then try again
        (False, "node2", 7, 1.0, True),  # a real failure waits the long interval
        (False, "node2", 7, REWIND_RETRY_INTERVAL - 0.1, True),
        (False, "node2", 7, REWIND_RETRY_INTERVAL, False),
        (False, "node2", 8, 1.0, False),  # the same holder reclaimed its lease: a new attempt
        (False, "node3", 8, 1.0, False),  # another leader: a new attempt
        (False, None, 8, 1.0, False),
    ],
)
def test_blocks_retry(unreachable: bool, holder: str | None, version: int, after: float, blocked: bool) -> None:
    failure = RewindFailure("node2", 7, AT, unreachable)
    assert failure.blocks_retry(holder, version, AT + after, loop_wait=1.0, ttl=5.0) is blocked


def test_long_interval_grows_with_ttl() -> None:
    failure = RewindFailure("node2", 7, AT, source_unreachable=False)
    assert failure.blocks_retry("node2", 7, AT + REWIND_RETRY_INTERVAL + 1, loop_wait=1.0, ttl=20.0)


@pytest.mark.parametrize(
    ("output", "hopeless"),
    [
        ("pg_rewind: error: could not read WAL record at 0/4039AF8: record with incorrect prev-link 0/3000028 "
         "at 0/4039AF8", True),
        ("pg_rewind: error: could not find previous WAL record at 0/3000100", True),
        ("pg_rewind: error: could not find common ancestor of the source and target cluster's timelines", True),
        ('pg_rewind: error: could not open file "/var/lib/postgresql/15/main/pg_wal/00000018.history" for reading: '
         "No such file or directory", True),
        ('pg_rewind: error: could not open file "/var/lib/postgresql/15/main/base/1/1259" for reading: '
         "Permission denied", False),
        ("FATAL:  requested timeline 79 is not a child of this server's history\npg_rewind: error: postgres "
         "single-user mode in target cluster failed", True),
        ("pg_rewind: error: postgres single-user mode in target cluster failed", False),
        ('pg_rewind: error: connection to server at "127.0.0.1", port 5433 failed: Connection refused', False),
        ("pg_rewind: error: source and target clusters are from different systems", False),
    ],
)
def test_rewind_failing_on_our_own_wal_cannot_succeed(output: str, hopeless: bool) -> None:
    assert RewindResult(RewindOutcome.FAILED, output).own_wal_unreadable is hopeless
    assert not RewindResult(RewindOutcome.REWOUND, output).own_wal_unreadable


@pytest.mark.parametrize(
    ("result", "changed"),
    [
        (RewindResult(RewindOutcome.FAILED, "pg_rewind: servers diverged at WAL location 0/3000060 on timeline 1\n"
                      "pg_rewind: rewinding from last common checkpoint at 0/2000060 on timeline 1\n"
                      "pg_rewind: error: could not fetch remote file \"global/pg_control\""), True),
        (RewindResult(RewindOutcome.FAILED, "timed out after 60 s", timed_out=True), True),
        (RewindResult(RewindOutcome.FAILED, "pg_rewind: error: could not read WAL record at 0/4039AF8"), False),
        (RewindResult(RewindOutcome.REWOUND, "pg_rewind: rewinding from last common checkpoint ... Done!"), False),
    ],
)
def test_a_rewind_that_began_changing_the_target_and_failed_leaves_it_unusable(result: RewindResult,
                                                                               changed: bool) -> None:
    assert result.changed_target_half_way is changed
