"""What a node publishes after a cycle (ha/records.py): the member record and the NodeStatus."""

from __future__ import annotations

import pytest

from raftpg.ha.memory import Memory, PgState
from raftpg.ha.records import member_record, node_status
from raftpg.ha.views import PgRole, SyncState
from raftpg.postgres.status import PgStatus
from tests.unit.api_fakes import make_settings
from tests.unit.ha_views import NOW, cluster, holder, lease, local

pytestmark = pytest.mark.unit

SYNC = SyncState("node1", frozenset({"node1", "node2"}), 1)  # inherited: still lists node1, now the holder
RUNNING = PgStatus(running=True, in_recovery=True)
STOPPED = PgStatus(running=False)


@pytest.mark.parametrize(
    ("holder_name", "mode", "sync_standby", "quorum_standby"),
    [
        ("node2", "on", True, False),
        ("node2", "quorum", False, True),
        ("node1", "on", False, False),  # the holder is never its own synchronous standby
        ("node1", "quorum", False, False),
    ],
)
def test_sync_flags_leave_out_the_holder(holder_name: str, mode: str, sync_standby: bool,
                                         quorum_standby: bool) -> None:
    the_cluster = cluster(lease(holder_name, f"i-{holder_name}"), sync=SYNC, synchronous_mode=mode)
    status = node_status(make_settings(), holder(role=PgRole.REPLICA), RUNNING, the_cluster, Memory(), None, "", NOW)
    assert (status.sync_standby, status.quorum_standby) == (sync_standby, quorum_standby)


def test_state_comes_from_memory_while_postgres_is_not_running() -> None:
    memory = Memory(state=PgState.REWINDING)
    status = node_status(make_settings(), local("node1", role=PgRole.STOPPED), STOPPED, cluster(), memory, None, "",
                         NOW)
    record = member_record(make_settings(), "i-node1", local("node1", role=PgRole.STOPPED), STOPPED, memory.state, None)
    assert (status.state, record["state"], record["role"]) == ("rewinding", "rewinding", "unknown")
    running = member_record(make_settings(), "i-node1", local("node1"), RUNNING, memory.state, None)
    assert (running["state"], running["role"], running["upstream"]) == ("running", "replica", "node1")
