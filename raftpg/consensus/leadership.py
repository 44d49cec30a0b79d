"""Raft leadership follows the lease (pure rule; node.py runs it on pysyncobj's tick thread).

The lease holder proposes a renewal every cycle. When it is also the Raft leader, a renewal
commits without a forwarding hop, and a switchover or a clean shutdown moves leadership on
purpose (Raft's TimeoutNow: the target campaigns at once) instead of leaving the cluster to
discover a dead leader by election timeout. So the Raft leader hands leadership to the lease
holder, if the holder is alive (its lease was renewed within its ttl, as this replica applied
it) and its replica is another member of the Raft cluster; when stopping, to the holder or else
to the most caught-up follower.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raftpg.consensus.model import Lease

TRANSFER_RETRY = 2.0
"""Seconds between attempts: a transfer pysyncobj refused (target not caught up) is tried again."""
REFUSED_WARN_AFTER = 30.0
"""Seconds of refusals in a row to the same target after which an operator should look."""


def leadership_target(lease: Lease, members: Mapping[str, Mapping[str, Any]], self_addr: str,
                      cluster_addrs: frozenset[str], now: float) -> str | None:
    """The Raft address leadership should move to, or None to keep it here."""
    if lease.holder is None or lease.bootstrapping or lease.expired(now):
        return None
    record = members.get(lease.holder) or {}
    addr = record.get("raft_addr")
    if not isinstance(addr, str) or addr == self_addr or addr not in cluster_addrs:
        return None
    return addr


@dataclass(frozen=True)
class Refusals:
    """A run of refused transfers to one target (None: the most caught-up follower)."""

    target: str | None
    since: float
    warned: bool = False


def refusal_level(run: Refusals | None, target: str | None, now: float) -> tuple[Refusals, int]:
    """How loudly to log one more refusal, and the run it extends.

    A refusal is retried every TRANSFER_RETRY: logging each at INFO filled the log while a
    target caught up. The first of a run is INFO, the rest DEBUG, except once at WARNING when
    the run has lasted over REFUSED_WARN_AFTER (a replica that never catches up is a real
    problem). A new target starts a new run; so does a success (the caller drops the run)."""
    if run is None or run.target != target:
        return Refusals(target, now), logging.INFO
    if not run.warned and now - run.since > REFUSED_WARN_AFTER:
        return Refusals(target, run.since, warned=True), logging.WARNING
    return run, logging.DEBUG
