"""The safety margin between the fence, /primary and the leader's own deadline."""

import pytest

from raftpg.config import MIN_TTL
from raftpg.fence import protocol as fence
from raftpg.ha.lease import fence_margin

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("ttl", [MIN_TTL, 5.0, 10.0, 30.0, 120.0])
def test_margin_covers_the_fence_reaction_and_kill(ttl: float) -> None:
    """The fence notices a passed deadline within one poll and needs the SIGQUIT grace before its
    SIGKILL: all of that must fit before the leader's own deadline, which no follower precedes."""
    margin = fence_margin(ttl)
    assert margin >= fence.POLL_INTERVAL + fence.QUIT_GRACE
    assert margin < ttl / 2, "the margin must leave most of the lease usable"
