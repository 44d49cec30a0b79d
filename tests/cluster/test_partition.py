"""A network partition of the primary, on network-namespace hosts (root only; skipped otherwise).

The cut-off primary must stop accepting writes before anyone else is promoted, one of the other two
must take over, and after the heal the old primary must come back as a replica of the new one, with
no acknowledged write lost. Outside clients cannot reach the cut node, so a prober runs inside its
namespace to see whether it still acknowledged writes while the new primary did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftpg.poll import wait_for
from tests.cluster.conftest import HEALTHY_TIMEOUT, make_cluster
from tests.cluster.faults import FaultCluster
from tests.cluster.netns import NetnsUnavailable, check_available
from tests.cluster.safety import Prober, SafetyChecker, overlapping_probes

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

TTL = 5.0
CUT_FOR = TTL * 2.5
REPO_ROOT = Path(__file__).resolve().parents[2]
# Label for the in-namespace prober's rows, so they never collide with the outside prober's keys.
INSIDE_LABEL_OFFSET = 10000
INSIDE_PROBER = """
import json, sys, time
from tests.cluster.safety import Prober
prober = Prober(sys.argv[1], int(sys.argv[2]))
prober.start()
deadline = time.monotonic() + 60
while not prober.intervals and time.monotonic() < deadline:
    time.sleep(0.02)
print("reached" if prober.intervals else "never reached", flush=True)
time.sleep(float(sys.argv[3]))
prober.stop()
print(json.dumps(prober.intervals))
"""


@pytest.fixture(scope="module", params=["off", "on", "quorum"])
def netns_cluster(request: pytest.FixtureRequest) -> Iterator[FaultCluster]:
    try:
        check_available()
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))
    clusters = make_cluster(request, netns=True, ttl=TTL, loop_wait=1, retry_timeout=2,
                            synchronous_mode=request.param)
    try:
        cluster = next(clusters)
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))
    yield cluster
    for _ in clusters:  # runs make_cluster's teardown
        pass


def timeline(cluster: FaultCluster, name: str) -> int | None:
    status, body = cluster.api_get(name, "/patroni")
    return body.get("timeline") if status == 200 and isinstance(body, dict) else None


def inside_prober(cluster: FaultCluster, name: str, seconds: float) -> subprocess.Popen[str]:
    """A prober in `name`'s own namespace: it keeps reaching that node's PostgreSQL while it is cut off."""
    port = cluster.nodes[name].ports.pg
    return subprocess.Popen(
        [*cluster.netns_exec(name), sys.executable, "-c", INSIDE_PROBER, cluster.dsn(name),
         str(port + INSIDE_LABEL_OFFSET), str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO_ROOT),
    )


def wait_reached(process: subprocess.Popen[str]) -> None:
    """Cut only once the prober has a write acknowledged: on a loaded host its start-up (Python,
    psycopg) can take longer than any fixed head start. The prober gives up after 60 s itself."""
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    assert first == "reached", f"the in-namespace prober {first or 'exited'} before the cut"


def collect(process: subprocess.Popen[str], label: int, timeout: float) -> Prober:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    result = Prober(dsn="", node_port=label)
    result.intervals = [(start, end) for start, end in json.loads(out.strip().splitlines()[-1])]
    return result


def test_partitioned_primary_is_replaced_and_rejoins_as_replica(netns_cluster: FaultCluster) -> None:
    cluster = netns_cluster
    for name, node in cluster.nodes.items():
        if node.raftpg_pid() is None:
            cluster.start_node(name)
    old = cluster.wait_healthy(HEALTHY_TIMEOUT)
    old_timeline = timeline(cluster, old)
    others = [name for name in cluster.nodes if name != old]
    with SafetyChecker(cluster) as checker:
        wait_for(lambda: len(checker.writer.acked) >= 20, 15, "the writer's first acknowledgements")
        inside = inside_prober(cluster, old, CUT_FOR + 2.0)
        wait_reached(inside)
        cluster.cut(old)
        cut_at = time.monotonic()
        try:
            new = wait_for(lambda: next((n for n in cluster.primaries() if n in others), None),
                           TTL * 4, "a new primary among the connected members")
            elected_after = time.monotonic() - cut_at
            time.sleep(max(0.0, CUT_FOR - (time.monotonic() - cut_at)))
        finally:
            cluster.heal(old)
        inside_probes = collect(inside, cluster.nodes[old].ports.pg + INSIDE_LABEL_OFFSET, 30)
        assert cluster.wait_healthy(HEALTHY_TIMEOUT) == new
        acked_at_heal = len(checker.writer.acked)
        wait_for(lambda: len(checker.writer.acked) >= acked_at_heal + 20, 15, "writes after the heal")
        checker.verify()
    assert inside_probes.intervals, "the in-namespace prober never reached the old primary before the cut"
    last_inside = max(end for _, end in inside_probes.intervals) - cut_at
    print(f"cut {old}: {new} primary after {elected_after:.1f}s; the cut node's last acknowledged write "
          f"{last_inside:.1f}s after the cut; {len(checker.writer.acked)} writes acknowledged")
    assert last_inside < elected_after, (
        f"the cut-off primary acknowledged a write {last_inside:.1f}s after the cut, "
        f"but {new} was primary {elected_after:.1f}s after it")
    new_prober = next(p for p in checker.probers if p.node_port == cluster.nodes[new].ports.pg)
    assert overlapping_probes([inside_probes, new_prober]) == []
    assert old in cluster.streaming_replicas(new)
    new_timeline = timeline(cluster, old)
    assert new_timeline is not None and old_timeline is not None and new_timeline > old_timeline
