"""GET/PUT /operations/<name> against the fake backend: the record, compare-and-set, bad bodies, auth."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from raftpg.api import ApiOptions, ClusterInfo, make_app
from raftpg.api.operations import MAX_RECORD_BYTES
from raftpg.config import Auth
from raftpg.consensus.errors import NoQuorum
from raftpg.consensus.model import Lease, Snapshot
from tests.unit.api_fakes import FakeBackend, make_settings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

PATH = "/operations/rolling_restart"


async def client_for(backend: FakeBackend) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(backend, ApiOptions())))
    await client.start_server()
    return client


async def test_no_operation_is_revision_zero_and_a_null_record() -> None:
    client = await client_for(FakeBackend())
    try:
        response = await client.get(PATH)
        assert response.status == 200
        assert await response.json() == {"name": "rolling_restart", "revision": 0, "record": None}
    finally:
        await client.close()


async def test_compare_and_set_moves_the_revision_and_refuses_a_stale_writer() -> None:
    backend = FakeBackend()
    client = await client_for(backend)
    try:
        response = await client.put(PATH, json={"record": {"step": "a"}, "expected_revision": 0})
        assert response.status == 200
        assert await response.json() == {"name": "rolling_restart", "revision": 1, "record": {"step": "a"}}
        stale = await client.put(PATH, json={"record": {"step": "b"}, "expected_revision": 0})
        assert stale.status == 409
        body = await stale.json()
        assert body["revision"] == 1 and body["record"] == {"step": "a"} and "someone else" in body["error"]
        ended = await client.put(PATH, json={"record": None, "expected_revision": 1})
        assert ended.status == 200
        response = await client.get(PATH)
        assert await response.json() == {"name": "rolling_restart", "revision": 2, "record": None}
    finally:
        await client.close()


@pytest.mark.parametrize("body, status, words", [
    ({"record": {}}, 400, "both required"),
    ({"expected_revision": 0}, 400, "both required"),
    ({"record": [1], "expected_revision": 0}, 400, "JSON object or null"),
    ({"record": {}, "expected_revision": -1}, 400, "integer >= 0"),
    ({"record": {}, "expected_revision": True}, 400, "integer >= 0"),
    ({"record": {}, "expected_revision": "1"}, 400, "integer >= 0"),
    ({"record": {}, "expected_revision": 0, "extra": 1}, 400, "extra"),
    ({"record": {"x": "y" * MAX_RECORD_BYTES}, "expected_revision": 0}, 413, "larger than"),
])
async def test_bad_bodies_change_nothing(body: dict[str, Any], status: int, words: str) -> None:
    backend = FakeBackend()
    client = await client_for(backend)
    try:
        response = await client.put(PATH, json=body)
        assert response.status == status
        assert words in (await response.json())["error"]
        assert backend.cluster_info.operations == {}
    finally:
        await client.close()


async def test_only_known_operations() -> None:
    client = await client_for(FakeBackend())
    try:
        for method in ("GET", "PUT"):
            response = await client.request(method, "/operations/other", json={"record": None, "expected_revision": 0})
            assert response.status == 404
            assert "unknown operation" in (await response.json())["error"]
    finally:
        await client.close()


async def test_writes_need_authentication_reads_do_not() -> None:
    backend = FakeBackend(settings=make_settings(Auth("admin", "secret")))
    client = await client_for(backend)
    body = {"record": {"step": "a"}, "expected_revision": 0}
    try:
        assert (await client.put(PATH, json=body)).status == 401
        assert (await client.get(PATH)).status == 200
        token = base64.b64encode(b"admin:secret").decode()
        response = await client.put(PATH, json=body, headers={"Authorization": f"Basic {token}"})
        assert response.status == 200
    finally:
        await client.close()


async def test_no_quorum_is_503() -> None:
    backend = FakeBackend()
    backend.error = NoQuorum("no leader")
    client = await client_for(backend)
    try:
        response = await client.put(PATH, json={"record": None, "expected_revision": 0})
        assert response.status == 503
    finally:
        await client.close()


def test_cluster_info_carries_the_operations_of_the_snapshot() -> None:
    lease = Lease(holder=None, instance_id=None, version=0, revision=0, ttl=0.0, lsn_at_handover=None,
                  bootstrapping=False, applied_at=0.0)
    operations = {"rolling_restart": {"revision": 3, "record": {"step": "a"}}}
    snapshot = Snapshot(scope="demo", initialize=None, lease=lease, members={}, member_applied_at={}, config={},
                        config_version=0, failover=None, failover_dropped=None, sync={}, history=(),
                        last_applied=1, operations=operations)
    assert ClusterInfo.from_snapshot(snapshot).operations == operations
