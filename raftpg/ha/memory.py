"""What this node remembers between HA cycles: one immutable Memory, replaced by every core step."""

from __future__ import annotations

import enum
from dataclasses import dataclass

REWIND_RETRY_INTERVAL = 30.0  # seconds before a failed pg_rewind is tried again against the same lease


class PgState(enum.StrEnum):
    """What the shell last did to PostgreSQL; published as the member's state while it is not running."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    REWINDING = "rewinding"
    CREATING_REPLICA = "creating replica"
    INITIALIZING = "initializing new cluster"


@dataclass(frozen=True)
class RewindFailure:
    """A failed pg_rewind counts against the same lease (holder and version) for a while; a new
    lease, or time, earns another attempt. A source that was merely unreachable (restarting, or
    killed a moment ago and reclaiming its lease) is tried again after loop_wait."""

    source: str
    lease_version: int  # of the source's lease when it failed
    at: float  # boottime
    source_unreachable: bool
    hopeless: bool = False  # it failed on our own WAL: no retry can succeed (RewindResult.own_wal_unreadable)

    def blocks_retry(self, holder: str | None, lease_version: int, now: float, loop_wait: float,
                     ttl: float) -> bool:
        if (self.source, self.lease_version) != (holder, lease_version):
            return False
        wait = loop_wait if self.source_unreachable else max(REWIND_RETRY_INTERVAL, 3 * ttl)
        return now - self.at < wait


@dataclass(frozen=True)
class Memory:
    """Everything the HA core carries from one cycle to the next (times are boottime unless noted)."""

    state: PgState = PgState.STOPPED
    upstream: str | None = None  # member our standby was started or pointed to stream from
    rewind_failure: RewindFailure | None = None
    rewound: bool = False  # pg_rewind (or its "not needed") already made us a valid standby
    needs_rewind: bool = False  # a standby that could not start or stream: rewind if timelines differ
    standby_recovering: bool = False  # a standby we started has not been seen consistent yet
    rewind_not_needed_from: str | None = None  # pg_rewind found nothing to do against this holder
    bootstrap_failed: bool = False
    sync_names: str | None = None  # synchronous_standby_names we keep in PostgreSQL (None: not known yet)
    sync_switch_lsn: int | None = None  # where PostgreSQL took the last synchronous_standby_names
    sync_waiting_since: float | None = None  # see sync.sync_wait_since
    promotion_witnesses: frozenset[str] = frozenset()  # sync members we counted on to take the lease
    promotion_reports_needed: int = 0  # how many of them must stop and report before we promote (rule 5)
    pg_down_since: float | None = None  # holder whose PostgreSQL is not running as primary, since
    not_streaming_since: float | None = None  # standby (or recovering) that does not stream, since
    scheduled_restart: float | None = None  # wall clock (Unix seconds) of an operator's scheduled restart
    config_applied: int | None = None  # dynamic configuration version last reloaded into PostgreSQL
