"""HA over TLS: a quorum-mode cluster whose REST APIs require client certificates (README's TLS
setup). Members must see each other for the leader race and the switchover's checkpoint check,
and a member whose certificate the others cannot verify must be reported, not silently skipped."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raftpg.cli.certs import CA_CERT_FILE
from raftpg.devcluster import LocalCluster
from raftpg.http.client import REFUSED_HANDSHAKE, HttpClient, HttpFailure, TlsFiles
from raftpg.http.problems import FailureKind
from raftpg.poll import wait_for
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster
from tests.cluster.safety import SafetyChecker

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def tls_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2, synchronous_mode="quorum", tls=True)


@pytest.fixture
def healthy(tls_cluster: LocalCluster) -> LocalCluster:
    for name, node in tls_cluster.nodes.items():
        if node.raftpg_pid() is None:
            tls_cluster.start_node(name)
    tls_cluster.wait_healthy(HEALTHY_TIMEOUT)
    return tls_cluster


def ctl(cluster: LocalCluster, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`raftpg ctl -c NODE.yml ...`: ctl presents that node's certificate."""
    config = cluster.nodes[node].config_path
    return subprocess.run([sys.executable, "-m", "raftpg.cli.main", "ctl", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)


def peer_problems(cluster: LocalCluster, name: str) -> dict[str, Any]:
    status, body = cluster.api_get(name, "/patroni")
    assert status == 200 and isinstance(body, dict), (status, body)
    problems = body["raftpg"]["peer_problems"]
    assert isinstance(problems, dict)
    return problems


def test_members_require_a_client_certificate_from_the_cluster_ca(healthy: LocalCluster) -> None:
    node = healthy.nodes["node1"]
    assert node.api_url.startswith("https://")
    without_cert = HttpClient(TlsFiles(cafile=healthy.ca_dir / CA_CERT_FILE), timeout=5)
    with pytest.raises(HttpFailure) as refused:
        without_cert.request_blocking("GET", f"{node.api_url}/patroni")
    assert (refused.value.kind, refused.value.reason) == (FailureKind.TLS, REFUSED_HANDSHAKE)
    for name in healthy.nodes:
        assert peer_problems(healthy, name) == {}


def test_ctl_switchover_over_tls(healthy: LocalCluster) -> None:
    old = healthy.wait_healthy(30)
    with SafetyChecker(healthy) as checker:
        time.sleep(0.5)
        done = ctl(healthy, old, "switchover", "--force")
        assert done.returncode == 0, done.stdout + done.stderr
        new = healthy.wait_primary(30, exclude=old)
        time.sleep(0.5)
        checker.verify()
    assert new != old
    healthy.wait_healthy(HEALTHY_TIMEOUT)


def test_kill9_of_the_primary_node_fails_over_over_tls(healthy: LocalCluster) -> None:
    old = healthy.wait_healthy(30)
    with SafetyChecker(healthy) as checker:
        time.sleep(0.5)
        healthy.kill_node(old)
        new = healthy.wait_primary(healthy.ttl + 30, exclude=old)
        time.sleep(0.5)
        checker.verify()
    listed = ctl(healthy, new, "list")
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in healthy.nodes), listed.stdout
    assert "Leader" in listed.stdout and new in listed.stdout
    healthy.start_node(old)
    assert healthy.wait_healthy(HEALTHY_TIMEOUT) == new


def test_a_member_with_an_untrusted_certificate_is_reported(healthy: LocalCluster) -> None:
    """A switchover to a member whose certificate the leader cannot verify fails, and says why:
    WARNING in the leader's log, the leader's /patroni, and `ctl list`."""
    primary = healthy.wait_healthy(30)
    replica = next(name for name in healthy.nodes if name != primary)
    healthy.stop_node(replica)
    healthy.issue_node_cert(replica, foreign=True)
    healthy.start_node(replica)
    try:
        wait_for(lambda: replica in healthy.streaming_replicas(primary), HEALTHY_TIMEOUT, f"{replica} streaming")
        refused = ctl(healthy, primary, "switchover", "--candidate", replica, "--force")
        assert refused.returncode != 0, refused.stdout
        problem = wait_for(lambda: peer_problems(healthy, primary).get(replica), 30,
                           f"{primary} to report {replica}'s certificate")
        assert problem["kind"] == "TLS" and "certificate verify failed" in problem["reason"], problem
        log = healthy.nodes[primary].log_path.read_text(errors="replace").splitlines()
        told = [line for line in log if f"cannot talk to peer {replica}" in line]
        assert told and all(" WARNING " in line for line in told), "\n".join(log[-40:])
        listed = ctl(healthy, primary, "list")
        assert listed.returncode == 0, listed.stderr
        assert "Connection problems" in listed.stdout, listed.stdout
        assert f"{replica}: TLS: certificate verify failed" in listed.stdout, listed.stdout
    finally:
        healthy.stop_node(replica)
        healthy.issue_node_cert(replica)
        healthy.start_node(replica)
    healthy.wait_healthy(HEALTHY_TIMEOUT)
