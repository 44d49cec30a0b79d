"""The steady-state peer check: a member whose certificate the others cannot verify is reported in
/patroni's peer_problems and the log while all is well, without waiting for a leader race or a
switchover to ask it anything (HaLoop._check_peers)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from raftpg.devcluster import LocalCluster
from raftpg.ha.loop import PEER_CHECK_INTERVAL, PEER_CHECK_TIMEOUT
from raftpg.poll import wait_for
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster
from tests.cluster.test_tls import peer_problems

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def tls_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2, tls=True)


def test_an_untrusted_peer_is_reported_in_steady_state(tls_cluster: LocalCluster) -> None:
    primary = tls_cluster.wait_healthy(HEALTHY_TIMEOUT)
    replica = next(name for name in tls_cluster.nodes if name != primary)
    for name in tls_cluster.nodes:
        assert peer_problems(tls_cluster, name) == {}
    tls_cluster.stop_node(replica)
    tls_cluster.issue_node_cert(replica, foreign=True)
    tls_cluster.start_node(replica)
    try:
        wait_for(lambda: replica in tls_cluster.streaming_replicas(primary), HEALTHY_TIMEOUT, f"{replica} streaming")
        problem = wait_for(lambda: peer_problems(tls_cluster, primary).get(replica),
                           PEER_CHECK_INTERVAL + PEER_CHECK_TIMEOUT + 15, f"{primary} to report {replica}")
        assert problem["kind"] == "TLS" and "certificate verify failed" in problem["reason"], problem
        log = tls_cluster.nodes[primary].log_path.read_text(errors="replace").splitlines()
        told = [line for line in log if f"cannot talk to peer {replica}" in line]
        assert told and all(" WARNING " in line for line in told), "\n".join(log[-40:])
        status, body = tls_cluster.api_get(primary, "/patroni")
        assert status == 200 and isinstance(body, dict) and body["role"] == "primary", body  # no race happened
    finally:
        tls_cluster.stop_node(replica)
        tls_cluster.issue_node_cert(replica)
        tls_cluster.start_node(replica)
    tls_cluster.wait_healthy(HEALTHY_TIMEOUT)
