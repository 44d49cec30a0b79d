"""What a pg_rewind run came to, read from its outcome and output."""

import enum
import re
from dataclasses import dataclass


class RewindOutcome(enum.Enum):
    REWOUND = "rewound"
    NOT_NEEDED = "not needed"
    FAILED = "failed"


@dataclass(frozen=True)
class RewindResult:
    outcome: RewindOutcome
    output: str
    timed_out: bool = False  # killed by our timeout, maybe half-way through

    @property
    def ok(self) -> bool:
        return self.outcome is not RewindOutcome.FAILED

    @property
    def source_unreachable(self) -> bool:
        """It failed before comparing anything: it could not connect to the source server."""
        failed_to_connect = re.search(r"connection to server .* failed", self.output) is not None
        return self.outcome is RewindOutcome.FAILED and failed_to_connect

    @property
    def changed_target_half_way(self) -> bool:
        """It failed (or timed out) after it had begun rewriting the target: pg_rewind announces
        the common checkpoint it rewinds from just before it changes anything."""
        return self.outcome is RewindOutcome.FAILED and (
            self.timed_out or "rewinding from last common checkpoint" in self.output)

    @property
    def own_wal_unreadable(self) -> bool:
        """It failed reading the target's (our) own WAL: a deterministic failure that retrying
        against the same source repeats (e.g. "record with incorrect prev-link" when two nodes
        forked the same timeline ID at different points, or our own timeline's history file
        missing from pg_wal, or the crash recovery pg_rewind runs first asked for a timeline that
        forked before our own last checkpoint — chaos seed 200: each retried every 30 s until the
        run gave up)."""
        return self.outcome is RewindOutcome.FAILED and re.search(
            r"could not (?:read WAL record|find previous WAL record)|incorrect prev-link|"
            r"could not find common ancestor|is not a child of this server's history|"
            r'could not open file "[^"]*pg_wal/[0-9A-F]{8}\.history" for reading', self.output) is not None
