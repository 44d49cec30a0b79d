"""status.parse_status: the one status row (the WAL receiver and the standbys as decoded JSON
arrays) read into a PgStatus; tests/cluster/test_postgres_instance.py runs the query itself."""

from __future__ import annotations

from typing import Any

import pytest

from raftpg.postgres.status import ReplicationRow, WalReceiverInfo, parse_status

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

SYSTEM_ID = 7312345678901234567


def _row(**overrides: Any) -> list[Any]:
    fields: dict[str, Any] = {
        "in_recovery": False, "system_identifier": str(SYSTEM_ID), "checkpoint_tli": 1, "current_tli": 2,
        "current_lsn": "0/3000148", "receive_lsn": None, "replay_lsn": None, "pending_restart": False,
        "server_version": 150010, "sync_names": "", "receiver": None, "replication": None,
    }
    fields.update(overrides)
    return list(fields.values())


def test_primary_with_two_standbys() -> None:
    replication = [["node2", "streaming", "quorum", "0/3000148", "0/3000100", None],
                   ["node3", "catchup", "async", None, None, None]]
    status = parse_status(_row(replication=replication, sync_names="ANY 1 (node2)"), postmaster_pid=42)
    assert status.running and status.postmaster_pid == 42 and status.in_recovery is False
    assert status.timeline == 2  # the WAL file being written, not the checkpoint's
    assert status.lsn == 0x3000148 and status.system_identifier == SYSTEM_ID
    assert status.wal_receiver is None and not status.streaming and status.upstream is None
    assert status.replication == (
        ReplicationRow("node2", "streaming", "quorum", 0x3000148, 0x3000100, None),
        ReplicationRow("node3", "catchup", "async", None, None, None),
    )
    assert status.synchronous_standby_names == "ANY 1 (node2)" and status.server_version == 150010


def test_streaming_standby_takes_the_received_timeline_and_the_furthest_lsn() -> None:
    receiver = ["streaming", "10.0.0.1", 5432, 3, "0/5000000"]
    status = parse_status(_row(in_recovery=True, checkpoint_tli=2, current_tli=None, current_lsn=None,
                               receive_lsn="0/5000000", replay_lsn="0/4FFFF00", receiver=receiver,
                               pending_restart=True), postmaster_pid=7)
    assert status.timeline == 3 and status.lsn == 0x5000000 and status.replay_lsn == 0x4FFFF00
    assert status.wal_receiver == WalReceiverInfo("streaming", "10.0.0.1:5432", 3, 0x5000000)
    assert status.streaming and status.upstream == "10.0.0.1:5432"
    assert status.pending_restart is True and status.replication == ()


def test_standby_without_receiver_keeps_the_checkpoint_timeline() -> None:
    receiver = ["waiting", None, None, None, None]
    status = parse_status(_row(in_recovery=True, checkpoint_tli=4, current_tli=None, current_lsn=None,
                               receive_lsn=None, replay_lsn="0/6000000", receiver=receiver), postmaster_pid=7)
    assert status.timeline == 4 and status.lsn == 0x6000000
    assert status.wal_receiver == WalReceiverInfo("waiting", None, None, None)
    assert not status.streaming and status.upstream is None
