"""Moving Raft leadership to the lease holder, on pysyncobj's tick thread (leadership.py has the
rule and why; pysyncobj's transport is not thread-safe, so transfers are started from a tick).

Checked every LEADERSHIP_CHECK_EVERY, not every tick: the leader ticks about 30 times a second.
A refused transfer (target not caught up) is retried every TRANSFER_RETRY and logged as
leadership.refusal_level says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pysyncobj import FAIL_REASON

from raftpg.clock import boottime
from raftpg.consensus.leadership import TRANSFER_RETRY, Refusals, leadership_target, refusal_level
from raftpg.consensus.machine import Published, lease_of
from raftpg.consensus.pysyncobj_internals import cluster_addrs, is_leader

logger = logging.getLogger(__name__)

LEADERSHIP_CHECK_EVERY = 0.2


class LeaseFollower:
    """One replica's tick callback. `handing_off` (set when the node stops): hand leadership to
    the holder or else to the most caught-up follower, even if the rule says keep it."""

    def __init__(self, obj: Any, self_addr: str, published: Callable[[], Published]) -> None:
        self._obj = obj
        self._self_addr = self_addr
        self._published = published
        self._checked_at = 0.0
        self._transfer_to: str | None = None
        self._transfer_not_before = 0.0
        self._refusals: Refusals | None = None
        self.handing_off = False

    def on_tick(self) -> None:
        now = boottime()
        if now - self._checked_at < LEADERSHIP_CHECK_EVERY:
            return
        self._checked_at = now
        if not is_leader(self._obj):
            self._transfer_to = None
            self._refusals = None
            return
        published = self._published()
        target = leadership_target(lease_of(published), published.state["members"], self._self_addr,
                                   frozenset(cluster_addrs(self._obj, self._self_addr)), now)
        if target is None and not self.handing_off:
            return
        if target == self._transfer_to and now < self._transfer_not_before:
            return
        retry = target == self._transfer_to
        self._transfer_to = target
        self._transfer_not_before = now + TRANSFER_RETRY
        why = "the lease holder's replica" if target is not None else "the most caught-up follower"
        logger.log(logging.DEBUG if retry else logging.INFO, "Raft leadership: handing it to %s (%s)",
                   target or "the most caught-up follower", why)
        self._obj.transferLeadership(target, callback=lambda _result, error: self.transfer_answered(target, error))

    def transfer_answered(self, target: str | None, error: int) -> None:
        """Tick thread: pysyncobj's answer to a transfer."""
        if error == FAIL_REASON.SUCCESS:
            self._refusals = None
            return
        now = boottime()
        self._refusals, level = refusal_level(self._refusals, target, now)
        to = target or "a follower"
        if level == logging.WARNING:
            logger.warning("Raft leadership transfer to %s still refused after %.0fs (error %s): its replica is "
                           "not connected or not catching up; trying again every %.0fs", to,
                           now - self._refusals.since, error, TRANSFER_RETRY)
        else:
            logger.log(level, "Raft leadership transfer to %s refused (error %s: not connected or not caught up); "
                       "trying again every %.0fs, logging repeats at DEBUG", to, error, TRANSFER_RETRY)
