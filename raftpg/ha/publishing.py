"""When a member republishes its record through Raft: on a change, or when the heartbeat is due.

Every publish is a Raft commit that every member applies, so publishing an unchanged record every
loop_wait cost n commits per loop_wait and O(n^2) leader traffic on an idle cluster. The record is
also the heartbeat: others see a member as fresh while its record was applied less than ttl ago
(ClusterView.from_snapshot). So an unchanged record is republished only when the one in Raft has
become old enough, judged on the same clock the freshness check uses: the local applied-at time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

VOLATILE = frozenset({"updated"})  # fields that differ on every publish and mean nothing to decide()


def heartbeat_interval(ttl: float, loop_wait: float) -> float:
    """Age of our record in Raft at which an unchanged record is published again.

    The check runs once per cycle, so the gap between two commits is at most the heartbeat plus
    one loop_wait plus the commit's own latency (a publish waits at most retry_timeout). With
    heartbeat + loop_wait = ttl / 2, and retry_timeout < ttl / 2 (config requires
    loop_wait + 2 * retry_timeout <= ttl), a record is always re-applied before it is ttl old:
    half the ttl is left for a slow commit, a slow cycle and followers applying later. When
    loop_wait >= ttl / 2 the heartbeat is 0: every cycle publishes, as without this rule.
    """
    return max(0.0, ttl / 2 - loop_wait)


def stable_part(record: Mapping[str, Any]) -> str:
    """The record without its volatile fields, as the JSON Raft stores (a tuple we send comes
    back a list): what decides whether it changed."""
    return json.dumps({key: value for key, value in record.items() if key not in VOLATILE}, sort_keys=True)


def should_publish(previous: Mapping[str, Any] | None, current: Mapping[str, Any],
                   last_commit_at: float | None, now: float, heartbeat: float) -> bool:
    """Publish when Raft holds no record of ours, a different one (any field but `updated`:
    role, state, timeline, LSNs, tags, instance_id...), or one applied `heartbeat` or more ago."""
    if previous is None or last_commit_at is None:
        return True
    if stable_part(previous) != stable_part(current):
        return True
    return now - last_commit_at >= heartbeat
