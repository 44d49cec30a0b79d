"""Raft leadership follows the lease: the pure rule (consensus/leadership.py)."""

from __future__ import annotations

import pytest

from raftpg.consensus.leadership import leadership_target
from raftpg.consensus.model import Lease

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
