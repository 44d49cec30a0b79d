"""The chaos runner's pure measurements: write gaps, overlapping probes, per-kind figures, and the
notice watch that keeps commits with a cancelled synchronous wait out of the acknowledged ones."""

from __future__ import annotations

import pytest

from benchmarks.chaos import FaultResult, kind_stats, overlaps, write_gap
from tests.cluster.safety import Prober, SyncWaitWatch


class FakeDiagnostic:
    def __init__(self, message: str) -> None:
        self.message_primary = message


def result(kind: str, recovery: float | None, gap: float) -> FaultResult:
    return FaultResult(kind=kind, detail="", primary_before="node1", primary_after="node2", started_s=0.0,
                       recovery_s=recovery, write_gap_s=gap, write_gap_from_s=0.0, writable_s=None,
                       identifier_changed=False)


def test_write_gap_counts_the_edges_of_the_window() -> None:
    assert write_gap([1.0, 2.0, 6.0, 7.0], start=0.5, end=8.0) == (4.0, 1.5)
    assert write_gap([], start=10.0, end=13.0) == (3.0, 0.0)
    assert write_gap([1.0, 9.0], start=2.0, end=5.0) == (3.0, 0.0)  # acks outside the window do not count


def test_overlapping_probes_on_two_nodes_are_found() -> None:
    a, b, c = Prober("", 1), Prober("", 2), Prober("", 3)
    a.intervals = [(0.0, 1.0), (5.0, 6.0)]
    b.intervals = [(1.0, 2.0), (5.5, 5.6)]
    c.intervals = [(10.0, 11.0)]
    count, examples = overlaps([a, b, c])
    assert count == 1
    assert examples == ["ports 1 and 2 both acknowledged writes at 5.500"]


def test_kind_stats_leave_interrupted_recoveries_out_of_the_figures() -> None:
    stats = kind_stats([result("power_loss", 4.0, 3.0), result("power_loss", None, 5.0),
                        result("power_loss", 6.0, 1.0), result("raft_disk_full", None, 2.0)])
    assert stats["power_loss"].count == 3
    assert stats["power_loss"].recovered == 2
    assert (stats["power_loss"].recovery_median_s, stats["power_loss"].recovery_max_s) == (5.0, 6.0)
    assert (stats["power_loss"].write_gap_median_s, stats["power_loss"].write_gap_max_s) == (3.0, 5.0)
    assert stats["raft_disk_full"].recovery_median_s is None


@pytest.mark.parametrize(("message", "cancelled"), [
    ("canceling wait for synchronous replication due to user request", True),
    ("canceling the wait for synchronous replication and terminating connection due to administrator command", True),
    ("there is no transaction in progress", False),
])
def test_sync_wait_watch_flags_only_a_cancelled_wait_and_resets(message: str, cancelled: bool) -> None:
    watch = SyncWaitWatch()
    watch(FakeDiagnostic(message))  # type: ignore[arg-type]
    assert watch.take() is cancelled
    assert watch.take() is False
