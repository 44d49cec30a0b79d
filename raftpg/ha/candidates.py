"""Who may become primary: the leader-race eligibility rules and switchover candidate choice."""

from __future__ import annotations

from raftpg.ha.views import ClusterView, LocalView, MemberView


def former_primary(cluster: ClusterView) -> MemberView | None:
    """The member that held the lease last, as it last reported itself."""
    holder = cluster.lease.holder
    if holder is not None and holder in cluster.members:
        return cluster.members[holder]
    primaries = [m for m in cluster.members.values() if m.role == "primary"]
    return max(primaries, key=lambda m: (m.timeline or 0, m.lsn or 0)) if primaries else None


def race_blocker(cluster: ClusterView, local: LocalView, *, manual: bool,
                 accept_data_loss: bool = False) -> str | None:
    """Why this node must not take the lease now, or None if it may.

    A manual failover skips the 'someone else is healthier' comparison (the operator chose), but
    never the rules that protect acknowledged writes — unless the operator explicitly accepted
    data loss.
    """
    config = cluster.config
    if local.tags.nofailover:
        return "nofailover tag is set"
    if local.cannot_lead is not None:
        return local.cannot_lead
    if local.lsn is None:
        return "we cannot tell our own WAL position"
    former = former_primary(cluster)
    if former is not None and former.name != local.name:
        if former.lsn is not None and not manual:
            lag = former.lsn - local.lsn
            if lag > config.maximum_lag_on_failover:
                return (f"we are {lag} bytes behind {former.name} > maximum_lag_on_failover "
                        f"{config.maximum_lag_on_failover}")
        if (config.check_timeline and former.timeline is not None and local.timeline is not None
                and local.timeline < former.timeline):
            return f"our timeline {local.timeline} is behind {former.name}'s {former.timeline}"
    sync_problem = None if accept_data_loss else _sync_blocker(cluster, local)
    if sync_problem is not None:
        return sync_problem
    for peer in sorted(cluster.peers.values(), key=lambda p: p.name):
        if not peer.reachable or peer.name == local.name:
            continue
        if peer.role == "primary":
            return f"{peer.name} still answers as a running primary"
        if manual or peer.nofailover or peer.lsn is None:
            continue
        if peer.lsn > local.lsn:
            return f"{peer.name} is further ahead (LSN {peer.lsn} > ours {local.lsn})"
        if peer.lsn == local.lsn and peer.failover_priority > local.tags.failover_priority:
            return f"{peer.name} is as far ahead and has a higher failover_priority"
    return None


def _sync_blocker(cluster: ClusterView, local: LocalView) -> str | None:
    """Only a member that provably has every acknowledged commit may promote (sync.py).

    The Raft record says every acknowledged commit is on `quorum` of `members`: we must know the
    positions of n - quorum + 1 of them (ourselves included) and be at least as far as all.
    Applied whatever synchronous_mode says now: a record left from before a mode change still
    describes commits that were acknowledged.
    """
    sync = cluster.sync
    if not sync.members or sync.quorum <= 0:
        return None
    if local.name not in sync.members:
        return f"not in the synchronous set {sorted(sync.members)}"
    needed = len(sync.members) - sync.quorum + 1
    known = {local.name}
    for peer in cluster.peers.values():
        if peer.name in sync.members and peer.reachable and peer.lsn is not None:
            if local.lsn is not None and peer.lsn > local.lsn:
                return f"synchronous member {peer.name} is further ahead"
            known.add(peer.name)
    if len(known) < needed:
        return (f"only {len(known)} of the {needed} synchronous members needed to prove we have "
                "every acknowledged commit are reachable")
    return None


def best_switchover_candidate(cluster: ClusterView, name: str, wanted: str | None) -> str | None:
    """The named member if it is a healthy streaming replica other than us (`name`), else the most
    advanced such member."""
    def healthy(member: MemberView) -> bool:
        return (member.name != name and member.fresh and member.role == "replica"
                and member.state == "running" and not member.tags.nofailover)

    if wanted is not None:
        member = cluster.members.get(wanted)
        return wanted if member is not None and healthy(member) else None
    pool = [m for m in cluster.members.values() if healthy(m)]
    if cluster.config.synchronous_mode != "off" and cluster.sync.members:
        pool = [m for m in pool if m.name in cluster.sync.members]
    if not pool:
        return None
    best = max(pool, key=lambda m: (m.lsn or 0, m.tags.failover_priority, m.name))
    return best.name
