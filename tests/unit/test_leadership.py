"""Raft leadership follows the lease: the pure rule (consensus/leadership.py), and how loudly a
refused transfer is logged."""

from __future__ import annotations

import logging

import pytest
from pysyncobj import FAIL_REASON

from raftpg.consensus import lease_follower as follower_module
from raftpg.consensus.leadership import TRANSFER_RETRY, Refusals, leadership_target, refusal_level
from raftpg.consensus.lease_follower import LeaseFollower
from raftpg.consensus.machine import Published
from raftpg.consensus.model import Lease
from raftpg.consensus.state import initial_state

pytestmark = pytest.mark.unit

ME, OTHER, STRANGER = "10.0.0.1:5000", "10.0.0.2:5000", "10.0.0.9:5000"
CLUSTER = frozenset({ME, OTHER})
MEMBERS = {"pg2": {"raft_addr": OTHER}, "pg1": {"raft_addr": ME}, "pg9": {"raft_addr": STRANGER},
           "odd": {"raft_addr": 5}}


def lease(holder: str | None, applied_at: float = 100.0, bootstrapping: bool = False) -> Lease:
    return Lease(holder=holder, instance_id="i", version=3, revision=9, ttl=5.0, lsn_at_handover=None,
                 bootstrapping=bootstrapping, applied_at=applied_at)


@pytest.mark.parametrize(
    ("the_lease", "now", "expected"),
    [
        pytest.param(lease("pg2"), 101.0, OTHER, id="holder-elsewhere-moves-leadership"),
        pytest.param(lease("pg1"), 101.0, None, id="holder-is-here"),
        pytest.param(lease(None), 101.0, None, id="no-holder"),
        pytest.param(lease("pg2"), 105.0, None, id="holder-not-renewing-is-no-target"),
        pytest.param(lease("pg2", bootstrapping=True), 101.0, None, id="bootstrap-claim"),
        pytest.param(lease("pg9"), 101.0, None, id="holder-replica-not-in-the-raft-cluster"),
        pytest.param(lease("gone"), 101.0, None, id="holder-without-a-record"),
        pytest.param(lease("odd"), 101.0, None, id="malformed-address"),
    ],
)
def test_leadership_target(the_lease: Lease, now: float, expected: str | None) -> None:
    assert leadership_target(the_lease, MEMBERS, ME, CLUSTER, now) == expected


def test_refusals_are_said_once_then_quietly_then_warned_about_once() -> None:
    levels = []
    run = None
    for now in (0.0, 2.0, 4.0, 30.0, 32.0, 34.0, 60.0):
        run, level = refusal_level(run, OTHER, now)
        levels.append(level)
    info, debug, warning = logging.INFO, logging.DEBUG, logging.WARNING
    assert levels == [info, debug, debug, debug, warning, debug, debug]
    assert run is not None and run.since == 0.0


def test_a_new_target_starts_a_new_run_of_refusals() -> None:
    run, _ = refusal_level(None, OTHER, 0.0)
    run, _ = refusal_level(run, OTHER, 40.0)
    run, level = refusal_level(run, None, 42.0)
    assert level == logging.INFO
    assert run == Refusals(None, 42.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_refusal_is_logged_once_until_it_lasts_or_succeeds(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    monkeypatch.setattr(follower_module, "boottime", clock)
    published = Published(initial_state(), 0.0, {}, frozenset())
    node = LeaseFollower(object(), ME, lambda: published)
    caplog.set_level(logging.DEBUG, logger=follower_module.__name__)
    for _ in range(20):  # 40 s of refusals, one every TRANSFER_RETRY
        node.transfer_answered(OTHER, FAIL_REASON.REQUEST_DENIED)
        clock.now += TRANSFER_RETRY
    node.transfer_answered(OTHER, FAIL_REASON.SUCCESS)
    node.transfer_answered(OTHER, FAIL_REASON.REQUEST_DENIED)
    levels = [record.levelno for record in caplog.records if "refused" in record.getMessage()]
    assert levels.count(logging.INFO) == 2  # the first of each run
    assert levels.count(logging.WARNING) == 1
    assert levels.index(logging.WARNING) == 16  # the first refusal more than 30 s after the first
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert OTHER in warning.getMessage() and "32s" in warning.getMessage()
