"""pg_controldata: the cluster's identity and last checkpoint, readable while PostgreSQL is down.

Switchover (DESIGN rule 4) compares a candidate's position with the old primary's shutdown
checkpoint, and rejoin decisions compare timelines; both read it from here.
"""

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from raftpg.postgres.command import command_env, run_command
from raftpg.postgres.lsn import parse_lsn


class ClusterState(enum.StrEnum):
    """pg_controldata's "Database cluster state"."""

    STARTING_UP = "starting up"
    SHUT_DOWN = "shut down"
    SHUT_DOWN_IN_RECOVERY = "shut down in recovery"
    SHUTTING_DOWN = "shutting down"
    IN_CRASH_RECOVERY = "in crash recovery"
    IN_ARCHIVE_RECOVERY = "in archive recovery"
    IN_PRODUCTION = "in production"

    @property
    def last_ran_as_primary(self) -> bool:
        """A primary's directory, stopped cleanly or not (pg_rewind may be needed against a new leader)."""
        return self in (ClusterState.IN_PRODUCTION, ClusterState.SHUT_DOWN)


CLEAN_SHUTDOWN_STATES = frozenset({ClusterState.SHUT_DOWN, ClusterState.SHUT_DOWN_IN_RECOVERY})


@dataclass(frozen=True)
class ControlData:
    system_identifier: int
    cluster_state: ClusterState
    timeline: int  # Latest checkpoint's TimeLineID
    prev_timeline: int
    checkpoint_lsn: int
    redo_lsn: int
    min_recovery_end_lsn: int
    min_recovery_end_timeline: int
    wal_log_hints: bool
    data_checksums: bool

    @property
    def clean_shutdown(self) -> bool:
        return self.cluster_state in CLEAN_SHUTDOWN_STATES


def _fields(text: str) -> Mapping[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def parse_controldata(text: str) -> ControlData:
    """Parse pg_controldata output produced with LC_ALL=C."""
    fields = _fields(text)
    try:
        return ControlData(
            system_identifier=int(fields["Database system identifier"]),
            cluster_state=ClusterState(fields["Database cluster state"]),
            timeline=int(fields["Latest checkpoint's TimeLineID"]),
            prev_timeline=int(fields["Latest checkpoint's PrevTimeLineID"]),
            checkpoint_lsn=parse_lsn(fields["Latest checkpoint location"]),
            redo_lsn=parse_lsn(fields["Latest checkpoint's REDO location"]),
            min_recovery_end_lsn=parse_lsn(fields["Minimum recovery ending location"]),
            min_recovery_end_timeline=int(fields["Min recovery ending loc's timeline"]),
            wal_log_hints=fields["wal_log_hints setting"] == "on",
            data_checksums=fields["Data page checksum version"] != "0",
        )
    except KeyError as exc:
        raise ValueError(f"pg_controldata output lacks {exc.args[0]!r}") from None


async def read_controldata(bin_dir: Path, data_dir: Path, timeout: float) -> ControlData:
    result = await run_command(
        [str(bin_dir / "pg_controldata"), "-D", str(data_dir)],
        timeout=timeout,
        env=command_env(c_locale=True),
    )
    return parse_controldata(result.stdout)
