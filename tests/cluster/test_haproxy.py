"""HAProxy, configured exactly as for Patroni (HTTP checks on /primary and /replica), in front of
a real cluster: clients reach the primary, follow a switchover within two check intervals, and
reach a replica on the read-only port.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from raftpg.devcluster import LocalCluster, free_ports
from raftpg.poll import wait_for
from tests.cluster.conftest import make_cluster

HAPROXY = shutil.which("haproxy")
if HAPROXY is None:
    pytest.skip("haproxy is not installed (CI installs Debian's haproxy)", allow_module_level=True)

pytestmark = [pytest.mark.cluster]

CHECK_INTERVAL = 0.5  # seconds: `inter 500` below
# Time between our own polls, added to the bound: we see a change up to one poll late.
POLL = 0.05

@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2)


@dataclass(frozen=True)
class Proxy:
    primary_port: int
    replica_port: int


def haproxy_config(cluster: LocalCluster, primary_port: int, replica_port: int) -> str:
    def listen(name: str, port: int, check: str) -> list[str]:
        lines = [
            f"listen {name}",
            f"    bind 127.0.0.1:{port}",
            f"    option httpchk GET {check}",
            "    http-check expect status 200",
            f"    default-server inter {int(CHECK_INTERVAL * 1000)} fall 2 rise 1 on-marked-down shutdown-sessions",
        ]
        lines += [f"    server {n} 127.0.0.1:{node.ports.pg} check port {node.ports.api}"
                  for n, node in cluster.nodes.items()]
        return lines

    return "\n".join([
        "global",
        "    maxconn 200",
        "defaults",
        "    mode tcp",
        "    retries 0",
        "    timeout connect 2s",
        "    timeout check 1s",
        "    timeout client 30m",
        "    timeout server 30m",
        *listen("primary", primary_port, "/primary"),
        *listen("replicas", replica_port, "/replica"),
        "",
    ])


@pytest.fixture(scope="module")
def proxy(cluster: LocalCluster) -> Iterator[Proxy]:
    assert HAPROXY is not None
    primary_port, replica_port = free_ports(2)
    workdir = Path(tempfile.mkdtemp(prefix="raftpg-haproxy-"))
    config = workdir / "haproxy.cfg"
    config.write_text(haproxy_config(cluster, primary_port, replica_port))
    checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=20,
                             check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log_path = workdir / "haproxy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([HAPROXY, "-f", str(config), "-db"], stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        yield Proxy(primary_port, replica_port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        print(f"\nhaproxy log:\n{log_path.read_text(errors='replace')[-3000:]}")
        shutil.rmtree(workdir, ignore_errors=True)


def through(port: int) -> tuple[bool, int] | None:
    """(in recovery, server port) of whatever PostgreSQL answers behind this proxy port, or None."""
    dsn = (f"host=127.0.0.1 port={port} user=postgres password=postgres-secret dbname=postgres "
           "connect_timeout=2")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery(), inet_server_port()").fetchone()
    except psycopg.Error:
        return None
    return (bool(row[0]), int(row[1])) if row else None


def is_replica_answer(answer: tuple[bool, int] | None, primary_port: int) -> bool:
    return answer is not None and answer[0] and answer[1] != primary_port


@pytest.mark.timeout(150)
def test_haproxy_routes_to_the_primary_follows_a_switchover_and_serves_replicas(cluster: LocalCluster,
                                                                                proxy: Proxy) -> None:
    old = cluster.wait_healthy(60)
    port_of = {name: node.ports.pg for name, node in cluster.nodes.items()}
    # HAProxy starts with every server up until its checks say otherwise: poll.
    wait_for(lambda: through(proxy.primary_port) == (False, port_of[old]), 10,
             f"HAProxy's primary port to reach {old}")
    wait_for(lambda: is_replica_answer(through(proxy.replica_port), port_of[old]), 10,
             "HAProxy's replica port to reach a replica")

    candidate = sorted(n for n in cluster.nodes if n != old)[0]
    status, body = cluster.api_request(old, "POST", "/switchover", {"leader": old, "candidate": candidate})
    assert status == 200, body
    wait_for(lambda: cluster.api_get(candidate, "/primary", timeout=1.0)[0] == 200, 30,
             f"{candidate} to answer /primary")
    promoted_at = time.monotonic()
    wait_for(lambda: through(proxy.primary_port) == (False, port_of[candidate]), 10,
             f"HAProxy's primary port to reach {candidate}", interval=POLL)
    delay = time.monotonic() - promoted_at
    print(f"\nHAProxy reached the new primary {delay:.3f}s after it answered /primary "
          f"(check interval {CHECK_INTERVAL}s)")
    assert delay <= 2 * CHECK_INTERVAL + POLL, f"HAProxy took {delay:.2f}s to follow the switchover"
    # Only the new primary is writable from now on. Until HAProxy's checks mark the old server down
    # (fall 2) it may still pick it and find PostgreSQL stopped, or restarted read-only: a failed
    # connection or a read-only session, never a writable one elsewhere. Then every connection
    # lands on the new primary.
    answers: list[tuple[bool, int] | None] = []

    def settled() -> bool:
        answer = through(proxy.primary_port)
        answers.append(answer)
        assert answer is None or answer[0] or answer == (False, port_of[candidate]), answers
        return answers[-10:] == [(False, port_of[candidate])] * 10

    wait_for(settled, 4 * CHECK_INTERVAL + 5, "ten connections in a row to reach the new primary", interval=0.0)

    cluster.wait_healthy(90)
    wait_for(lambda: is_replica_answer(through(proxy.replica_port), port_of[candidate]), 10,
             "HAProxy's replica port to reach a replica")
