"""A snapshot of the local PostgreSQL as the HA loop needs it, read in one query."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raftpg.postgres.lsn import parse_lsn, parse_optional_lsn
from raftpg.postgres.session import PgSession


@dataclass(frozen=True)
class ReplicationRow:
    """One standby streaming from this server (pg_stat_replication)."""

    application_name: str
    state: str
    sync_state: str
    write_lsn: int | None
    flush_lsn: int | None
    replay_lsn: int | None


@dataclass(frozen=True)
class WalReceiverInfo:
    """This standby's WAL receiver (pg_stat_wal_receiver)."""

    status: str
    upstream: str | None  # "host:port" it streams from
    received_tli: int | None
    flushed_lsn: int | None

    @property
    def streaming(self) -> bool:
        return self.status == "streaming"


@dataclass(frozen=True)
class PgStatus:
    """running means the postmaster is alive AND answered; postmaster_pid alone means it is
    alive but not (yet) accepting connections, and error says why the query failed."""

    running: bool
    postmaster_pid: int | None = None
    in_recovery: bool | None = None
    timeline: int | None = None
    system_identifier: int | None = None
    lsn: int | None = None  # primary: current WAL write position; standby: max(receive, replay)
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    wal_receiver: WalReceiverInfo | None = None
    replication: tuple[ReplicationRow, ...] = ()
    pending_restart: bool = False
    server_version: int | None = None
    synchronous_standby_names: str | None = None
    error: str | None = None

    @property
    def streaming(self) -> bool:
        return self.wal_receiver is not None and self.wal_receiver.streaming

    @property
    def upstream(self) -> str | None:
        return self.wal_receiver.upstream if self.wal_receiver is not None else None


# One round trip: the HA loop reads this every cycle on every member. pg_walfile_name() is
# refused during recovery, hence the CASE; on a primary the current WAL file names the timeline
# being written (the checkpoint's lags right after a promote). The WAL receiver (at most one row)
# and the standbys streaming from us come as JSON arrays, which psycopg decodes.
_STATUS_QUERY = """
SELECT pg_is_in_recovery(),
       (SELECT system_identifier FROM pg_control_system()),
       (SELECT timeline_id FROM pg_control_checkpoint()),
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       (SELECT coalesce(bool_or(pending_restart), false) FROM pg_settings),
       current_setting('server_version_num')::int,
       current_setting('synchronous_standby_names'),
       (SELECT json_build_array(status, sender_host, sender_port, received_tli, flushed_lsn::text)
        FROM pg_stat_wal_receiver LIMIT 1),
       (SELECT json_agg(json_build_array(application_name, state, coalesce(sync_state, ''),
                                         write_lsn::text, flush_lsn::text, replay_lsn::text)
                        ORDER BY application_name)
        FROM pg_stat_replication)
"""


def _max_lsn(*values: int | None) -> int | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _receiver(row: Sequence[Any] | None) -> WalReceiverInfo | None:
    if row is None:
        return None
    status, host, port, received_tli, flushed = row
    return WalReceiverInfo(
        status=status,
        upstream=f"{host}:{port}" if host is not None else None,
        received_tli=received_tli,
        flushed_lsn=parse_optional_lsn(flushed),
    )


def _replication(rows: Sequence[Sequence[Any]] | None) -> tuple[ReplicationRow, ...]:
    return tuple(
        ReplicationRow(
            application_name=name,
            state=state,
            sync_state=sync_state,
            write_lsn=parse_optional_lsn(write),
            flush_lsn=parse_optional_lsn(flush),
            replay_lsn=parse_optional_lsn(replay),
        )
        for name, state, sync_state, write, flush, replay in rows or ()
    )


def parse_status(row: Sequence[Any], postmaster_pid: int) -> PgStatus:
    """The PgStatus of one row of _STATUS_QUERY (JSON columns already decoded)."""
    (
        in_recovery,
        system_identifier,
        checkpoint_tli,
        current_tli,
        current_lsn,
        receive_text,
        replay_text,
        pending_restart,
        server_version,
        sync_names,
        receiver_row,
        replication_rows,
    ) = row
    receiver = _receiver(receiver_row)
    receive_lsn = parse_optional_lsn(receive_text)
    replay_lsn = parse_optional_lsn(replay_text)
    if in_recovery:
        received_tli = receiver.received_tli if receiver is not None else None
        timeline = max(checkpoint_tli, received_tli or 0)
        lsn = _max_lsn(receive_lsn, replay_lsn)
    else:
        timeline = current_tli
        lsn = parse_lsn(current_lsn)
    return PgStatus(
        running=True,
        postmaster_pid=postmaster_pid,
        in_recovery=in_recovery,
        timeline=timeline,
        system_identifier=int(system_identifier),
        lsn=lsn,
        receive_lsn=receive_lsn,
        replay_lsn=replay_lsn,
        wal_receiver=receiver,
        replication=_replication(replication_rows),
        pending_restart=pending_restart,
        server_version=server_version,
        synchronous_standby_names=sync_names,
    )


async def query_status(session: PgSession, postmaster_pid: int, timeout: float) -> PgStatus:
    """Read the status of a server whose postmaster is alive; raises QueryFailed."""
    return parse_status((await session.fetch(_STATUS_QUERY, timeout=timeout))[0], postmaster_pid)
