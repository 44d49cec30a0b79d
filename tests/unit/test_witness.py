"""A witness member in the cluster state: the HA core never sees it as a PostgreSQL peer, the
REST API and ctl still show it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from raftpg.api.backend import ClusterInfo
from raftpg.api.documents import cluster_document
from raftpg.api.health import HEALTH_CHECKS, Probe
from raftpg.cli.ctl.model import ClusterView as CtlCluster
from raftpg.cli.ctl.model import MemberView as CtlMember
from raftpg.cli.ctl.rolling_plan import refusal, without_witnesses
from raftpg.config import DynamicConfig
from raftpg.config.witness import WITNESS_TAGS
from raftpg.consensus import Lease, Snapshot
from raftpg.ha.actions import EnsureSlots, RemoveMember
from raftpg.ha.decide import decide
from raftpg.ha.memory import PgState
from raftpg.ha.records import member_record
from raftpg.ha.status import NodeStatus
from raftpg.ha.views import ClusterView
from raftpg.postgres.status import PgStatus
from tests.unit.api_fakes import make_settings
from tests.unit.ha_views import NOW, holder, local

pytestmark = pytest.mark.unit

WITNESS = "witness1"
WITNESS_RECORD: dict[str, Any] = {
    "kind": "witness", "instance_id": "w1", "raft_addr": "10.0.0.13:5010", "api_url": "http://10.0.0.13:8008",
    "host": "10.0.0.13", "port": None, "role": "witness", "state": "running",
    "tags": {"nofailover": True, "failover_priority": 0, "noloadbalance": True, "clonefrom": False, "nosync": True},
}


def database(role: str, lsn: int) -> dict[str, Any]:
    return {"instance_id": f"i-{role}", "api_url": "http://db:8008", "host": "db", "port": 5432, "role": role,
            "state": "running", "timeline": 1, "lsn": lsn, "tags": {}}


def snapshot() -> Snapshot:
    lease = Lease(holder="node1", instance_id="i-node1", version=3, revision=40, ttl=5.0, lsn_at_handover=None,
                  bootstrapping=False, applied_at=NOW)
    members = {"node1": database("primary", 200), "node2": database("replica", 100), "witness1": WITNESS_RECORD}
    return Snapshot(scope="prod", initialize="7000000000000000001", lease=lease, members=members,
                    member_applied_at=dict.fromkeys(members, NOW), config={}, config_version=1, failover=None,
                    failover_dropped=None, sync={}, history=(), last_applied=50)


def test_the_ha_core_does_not_see_a_witness() -> None:
    view = ClusterView.from_snapshot(snapshot(), DynamicConfig(), NOW + 1)
    assert set(view.members) == {"node1", "node2"}


def test_no_replication_slot_for_a_witness() -> None:
    view = ClusterView.from_snapshot(snapshot(), DynamicConfig(), NOW + 1)
    slots = [a for a in decide(view, holder()) if isinstance(a, EnsureSlots)]
    assert slots and all("witness1" not in a.members for a in slots)
    assert any("node2" in a.members for a in slots)


def test_cluster_document_lists_the_witness_with_its_role() -> None:
    doc = cluster_document(ClusterInfo.from_snapshot(snapshot()), "quorum")
    entry = next(m for m in doc["members"] if m["name"] == "witness1")
    assert (entry["role"], entry["state"], entry["host"], entry["port"]) == ("witness", "running", "10.0.0.13", None)
    assert entry["api_url"] == "http://10.0.0.13:8008/patroni"


def witness_probe(path_query: dict[str, str] | None = None, state: str = "running") -> Probe:
    status = NodeStatus(name="witness1", scope="prod", role="witness", state=state, tags=WITNESS_TAGS,
                        lease_holder="node1", lease_version=3, updated_at=NOW)
    return Probe(status, ClusterInfo.from_snapshot(snapshot()), DynamicConfig(), NOW + 1, path_query or {})


@pytest.mark.parametrize(
    ("path", "code"),
    [("/health", 200), ("/liveness", 200), ("/primary", 503), ("/", 503), ("/leader", 503), ("/replica", 503),
     ("/read-only", 503), ("/sync", 503), ("/quorum", 503), ("/async", 503), ("/readiness", 503)],
)
def test_health_checks_on_a_witness(path: str, code: int) -> None:
    assert (200 if HEALTH_CHECKS[path](witness_probe()) else 503) == code


def test_a_witness_not_yet_running_is_not_healthy() -> None:
    assert not HEALTH_CHECKS["/health"](witness_probe(state="starting"))


def test_a_database_members_record_says_postgres() -> None:
    record = member_record(make_settings(), "i-node1", holder(), PgStatus(running=True), PgState.RUNNING, None)
    assert record["kind"] == "postgres"
    view = ClusterView.from_snapshot(replace(snapshot(), members={"node1": record, "witness1": WITNESS_RECORD}),
                                     DynamicConfig(), NOW + 1)
    assert set(view.members) == {"node1"}


@pytest.mark.parametrize(("age", "forgotten"), [(10.0, False), (1801.0, True)])
def test_the_primary_forgets_a_witness_gone_for_member_slots_ttl(age: float, forgotten: bool) -> None:
    snap = replace(snapshot(), member_applied_at={"node1": NOW, "node2": NOW, "witness1": NOW - age})
    view = ClusterView.from_snapshot(snap, DynamicConfig(), NOW + 1)
    assert view.witness_ages["witness1"] == age + 1
    removed = [a.name for a in decide(view, holder()) if isinstance(a, RemoveMember)]
    assert removed == (["witness1"] if forgotten else [])
    replica_view = decide(view, local())  # only the lease holder forgets members
    assert not any(isinstance(a, RemoveMember) for a in replica_view)


def test_a_rolling_restart_leaves_the_witness_out() -> None:
    def ctl_member(name: str, role: str) -> CtlMember:
        return CtlMember(name=name, role=role, state="running", api_url=f"http://{name}:8008", replay_lag=0)

    view = CtlCluster("prod", (ctl_member("node1", "leader"), ctl_member("node2", "quorum_standby"),
                               ctl_member(WITNESS, "witness")))
    assert "witness1 is not streaming" in (refusal(view, {"node2": True}, 100) or "")
    databases = without_witnesses(view)
    assert databases.names == ("node1", "node2")
    assert refusal(databases, {"node2": True}, 100) is None
