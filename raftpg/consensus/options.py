"""The pysyncobj timing options raftpg derives from the lease ttl (DESIGN.md: the defaults reconnect
far too slowly for a short lease)."""

from __future__ import annotations

from raftpg.config import MIN_TTL


def raft_timings(ttl: float) -> dict[str, float]:
    """pysyncobj timeouts derived from the lease ttl (seconds).

    The lease holder renews through Raft, so a Raft leader change must finish well within one
    ttl or a healthy primary would lose its lease. Followers notice a dead Raft leader after a
    random election timeout in [raftMinTimeout, raftMaxTimeout] = [0.08, 0.16] * ttl; even with
    a split vote and a reconnect (connectionRetryTime = 0.1 * ttl) the new leader is there in
    about 0.4 * ttl, leaving the holder more than half the lease to renew. Heartbeats
    (appendEntriesPeriod) come four times per minimum election timeout, so a missed one or two
    do not start an election; more often buys nothing (a commit is sent at once, not with the
    next heartbeat) and costs every member CPU: each is an encrypted message to every follower
    and an encrypted answer. connectionTimeout
    (0.2 * ttl) is at least raftMaxTimeout, as pysyncobj requires, so a silent peer's TCP
    connection is dropped about when its leadership would be. A leader cut off from the
    majority steps down after leaderFallbackTimeout = 0.3 * ttl, so its callers get "no leader"
    quickly instead of waiting for commits that cannot happen. pysyncobj's defaults (5 s
    reconnect, 30 s fallback) are far too slow for a short lease. At MIN_TTL the election
    timeout is 240-480 ms, still clear of pysyncobj's 50 ms tick.
    """
    if ttl < MIN_TTL:
        raise ValueError(f"ttl must be at least {MIN_TTL:g} seconds, got {ttl:g}")
    raft_min = ttl * 0.08
    timings = {
        "raftMinTimeout": raft_min,
        "raftMaxTimeout": ttl * 0.16,
        "appendEntriesPeriod": raft_min / 4,
        "connectionTimeout": ttl * 0.2,
        "connectionRetryTime": ttl * 0.1,
        "leaderFallbackTimeout": ttl * 0.3,
    }
    return {key: round(value, 4) for key, value in timings.items()}
