"""Synchronous replication planning (DESIGN rule 5), pure.

Both PostgreSQL's setting and the Raft `sync` record are read as one statement: "every
acknowledged commit is on at least `quorum` of `members`". `FIRST k (k names)` (synchronous_mode
on) and `ANY k (names)` (quorum) are both that statement. A member may promote only when it has
seen `len(members) - quorum + 1` of the Raft members and is the most advanced of them
(candidates.py). The promotion rule is safe as long as

    PostgreSQL's members ⊆ Raft's members   and   PostgreSQL's quorum >= Raft's quorum,

so changes go: widen Raft, then set PostgreSQL, then — once every member of the new set has
flushed past the LSN at which PostgreSQL switched — narrow Raft. Going asynchronous (no standby
left, not strict) is published in Raft first: a primary cut off from Raft cannot complete that
step, so it keeps blocking instead of acknowledging commits no promotable member has.

A freshly promoted primary starts with an unsatisfiable setting (BLOCKING): it acknowledges nothing
until its standbys are in the Raft set. The Raft record it inherits describes the commits its
predecessor acknowledged; it narrows only once the new standbys have flushed past the switch.

Falling back to asynchronous commits is for standbys that are really gone. A standby that merely
has not reconnected yet — after this primary's start, restart or promotion, or a moment after it
dropped — must not cost an acknowledged write: the wait for one (sync_wait_since) must last
`synchronous_fallback_timeout` before the fallback is allowed (may_fall_back); until then the
current, blocking setting stays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BLOCKING_NAME = "raftpg_no_sync_standby_yet"


@dataclass(frozen=True)
class SyncSet:
    members: frozenset[str]
    quorum: int

    @property
    def empty(self) -> bool:
        return not self.members

    def covers(self, other: SyncSet) -> bool:
        """Raft (self) may promote safely while PostgreSQL runs with `other`."""
        return other.members <= self.members and other.quorum >= self.quorum


ASYNC = SyncSet(frozenset(), 0)


@dataclass(frozen=True)
class Candidate:
    name: str
    flush_lsn: int


def standby_names(mode: str, sync: SyncSet | None) -> str:
    """synchronous_standby_names for a set; None means 'block every commit'."""
    if sync is None:
        return f'FIRST 1 ("{BLOCKING_NAME}")'
    if sync.empty:
        return ""
    names = ", ".join(f'"{name}"' for name in sorted(sync.members))
    kind = "ANY" if mode == "quorum" else "FIRST"
    return f"{kind} {sync.quorum} ({names})"


_NAMES = re.compile(r"^\s*(?:(FIRST|ANY)\s+)?(\d+)\s*\((.*)\)\s*$", re.IGNORECASE)


def parse_standby_names(text: str | None) -> SyncSet | None:
    """What PostgreSQL currently guarantees; None when it blocks commits (or is unparsable)."""
    text = (text or "").strip()
    if not text:
        return ASYNC
    match = _NAMES.match(text)
    if match is None:
        return None
    names = frozenset(n.strip().strip('"') for n in match.group(3).split(",") if n.strip())
    if BLOCKING_NAME in names or "*" in names:
        return None
    # FIRST k and ANY k both mean: every acknowledged commit is on k of these names.
    return SyncSet(names, min(int(match.group(2)), len(names)))


def sync_wait_since(previous: float | None, *, primary: bool, has_candidates: bool, now: float) -> float | None:
    """Since when (boottime) this node, a primary holding the lease, has had no synchronous
    standby candidate; None while it is not such a primary or has one.

    The wait begins at the first cycle as primary without a candidate (its own start, restart or
    promotion: standbys have to reconnect) and at the first cycle after its last candidate dropped.
    """
    if not primary or has_candidates:
        return None
    return now if previous is None else previous


def may_fall_back(waiting_since: float | None, now: float, timeout: float) -> bool:
    """Whether the wait has lasted `timeout`; a wait not yet recorded begins now."""
    waited = 0.0 if waiting_since is None else now - waiting_since
    return waited >= timeout


def target_set(mode: str, node_count: int, strict: bool, candidates: Sequence[Candidate],
               current: SyncSet, *, fall_back: bool = True) -> SyncSet | None:
    """The set to converge to; None: keep what we have (strict mode with no standby, or the wait
    for one has not lasted synchronous_fallback_timeout yet: `fall_back` False)."""
    if mode == "off":
        return ASYNC
    if not candidates:
        return ASYNC if fall_back and not strict else None
    if mode == "quorum":
        members = frozenset(c.name for c in candidates)
        return SyncSet(members, min(max(node_count, 1), len(members)))
    ranked = sorted(candidates, key=lambda c: (c.name not in current.members, -c.flush_lsn, c.name))
    chosen = frozenset(c.name for c in ranked[: max(node_count, 1)])
    return SyncSet(chosen, len(chosen))


@dataclass(frozen=True)
class SyncStep:
    """One step towards the target: a Raft write or a PostgreSQL setting, never both at once."""

    raft: SyncSet | None = None
    postgres: SyncSet | None = None
    reason: str = ""


def next_step(raft: SyncSet, postgres: SyncSet | None, target: SyncSet | None,
              flushed: Mapping[str, int], switch_lsn: int) -> SyncStep | None:
    """The next safe step, or None when nothing is to be done (or we must wait).

    `switch_lsn` is where PostgreSQL last changed its setting (or, when unknown, our current
    position): Raft narrows only once every member of the new set has flushed past it.
    """
    if target is None:
        return None
    if postgres is None:
        return _from_blocking(raft, target)
    if postgres != target:
        if target.empty:
            if raft != target:
                return SyncStep(raft=target, reason="no synchronous standby available: publishing asynchronous mode")
            return SyncStep(postgres=target, reason="no synchronous standby available: running asynchronously")
        if postgres.empty:
            # Coming from asynchronous commits, which nothing protects: publish the target itself
            # (a quorum of 0 would let anyone promote once PostgreSQL counts on the set).
            if raft != target:
                return SyncStep(raft=target, reason=f"publishing the synchronous set {_show(target)}")
            return SyncStep(postgres=target, reason=f"synchronous standbys now {_show(target)}")
        if not raft.covers(target) or not raft.covers(postgres):
            quorums = [s.quorum for s in (raft, target, postgres) if not s.empty]
            widened = SyncSet(raft.members | target.members | postgres.members, min(quorums))
            return SyncStep(raft=widened, reason=f"widening the synchronous set to {_show(widened)} in Raft first")
        return SyncStep(postgres=target, reason=f"setting synchronous_standby_names for {_show(target)}")
    if raft == target:
        return None
    laggards = sorted(m for m in target.members if flushed.get(m, -1) < switch_lsn)
    if laggards:
        return None
    return SyncStep(raft=target, reason=f"narrowing the synchronous set to {_show(target)}")


def _from_blocking(raft: SyncSet, target: SyncSet) -> SyncStep:
    """PostgreSQL blocks every commit, so nothing was acknowledged under its setting — but Raft's
    record may still describe commits acknowledged earlier, under the previous holder (a record
    survives a change of holder: consensus/state.py). Raft may jump to the target only when the
    target keeps that statement true (it covers the record) or the record promised nothing; else
    PostgreSQL takes the target under a record that covers it (widened first if need be), and Raft
    narrows once the new members flushed past the switch (the `postgres == target` path). Going
    asynchronous is the fallback's documented trade and jumps."""
    if raft == target:
        return SyncStep(postgres=target, reason=f"synchronous standbys now {_show(target)}")
    if raft.empty or target.empty or target.covers(raft):
        return SyncStep(raft=target, reason=f"publishing the synchronous set {_show(target)}")
    if raft.covers(target):
        return SyncStep(postgres=target, reason=f"synchronous standbys now {_show(target)}, "
                        f"keeping {_show(raft)} in Raft until they have flushed past the switch")
    widened = SyncSet(raft.members | target.members, min(raft.quorum, target.quorum))
    return SyncStep(raft=widened, reason=f"widening the synchronous set to {_show(widened)} in Raft first")


def _show(sync: SyncSet) -> str:
    return f"{sorted(sync.members)} (quorum {sync.quorum})" if sync.members else "[] (asynchronous)"
