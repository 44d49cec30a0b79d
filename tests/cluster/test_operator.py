"""Operator semantics on a real 3-node cluster, driven as an operator would: `raftpg ctl` as a
subprocess and the REST API over HTTP. Planned switchovers (now, scheduled, cancelled), pause
mode, a rolling restart under pause, dynamic configuration reaching every member, reinit, and
API load not costing the primary its lease.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from raftpg.poll import wait_for
from tests.cluster.conftest import make_cluster
from tests.cluster.faults import FaultCluster
from tests.cluster.safety import SafetyChecker

pytestmark = [pytest.mark.cluster]

CTL_TIMEOUT = 120.0
HEALTHY_TIMEOUT = 90.0

@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[FaultCluster]:
    yield from make_cluster(request, ttl=5, loop_wait=1, retry_timeout=2)


# --- helpers ---------------------------------------------------------------------------------


def running(cluster: FaultCluster) -> list[str]:
    return [name for name, node in cluster.nodes.items() if node.raftpg_pid() is not None]


def ctl(cluster: FaultCluster, *args: str, via: str | None = None,
        timeout: float = CTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`raftpg ctl -c <node.yml> ARGS` as a child process (no terminal: never prompts)."""
    name = via or running(cluster)[0]
    argv = [sys.executable, "-m", "raftpg.cli.main", "ctl", "-c", str(cluster.nodes[name].config_path), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTPG_")}
    env["COLUMNS"] = "200"
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


def ctl_ok(cluster: FaultCluster, *args: str, via: str | None = None, timeout: float = CTL_TIMEOUT) -> str:
    result = ctl(cluster, *args, via=via, timeout=timeout)
    assert result.returncode == 0, (f"raftpg ctl {' '.join(args)} exited {result.returncode}\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result.stdout


def cluster_doc(cluster: FaultCluster, name: str) -> dict[str, Any]:
    status, body = cluster.api_get(name, "/cluster")
    assert status == 200 and isinstance(body, dict), (status, body)
    return body


def lease_seen_by(cluster: FaultCluster, name: str) -> tuple[str | None, int]:
    """(holder, version) of the lease as `name`'s Raft replica applied it."""
    own = cluster_doc(cluster, name)["raftpg"]
    return own["lease_holder"], int(own["lease_version"])


def show(cluster: FaultCluster, name: str, parameter: str) -> str | None:
    try:
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            row = conn.execute(f"SHOW {parameter}").fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row else None


def streams(cluster: FaultCluster, primary: str, name: str) -> bool:
    return name in cluster.streaming_replicas(primary) and cluster.api_get(name, "/replica", timeout=1.0)[0] == 200


def wait_acked_on(checker: SafetyChecker, port: int, after: float, timeout: float = 30.0) -> None:
    """Until the writer has an acknowledgement from `port` later than `after` (monotonic)."""
    wait_for(lambda: any(p == port and t > after for _, t, p in checker.writer.acked), timeout,
             f"an acknowledged write on port {port}")


def wait_writer_going(checker: SafetyChecker) -> None:
    wait_for(lambda: len(checker.writer.acked) >= 30, 30, "the writer's first acknowledgements")


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).isoformat()


def set_pause(cluster: FaultCluster, paused: bool) -> None:
    """Best effort, for the fixture: leave no test's pause behind for the next one."""
    for name in running(cluster):
        status, body = cluster.api_get(name, "/cluster")
        if status == 200 and isinstance(body, dict):
            if bool(body.get("pause")) != paused:
                cluster.api_request(name, "PATCH", "/config", {"pause": paused})
            return


@pytest.fixture
def ready(cluster: FaultCluster) -> Iterator[FaultCluster]:
    """Every node running, not paused, no pending switchover, one primary and all replicas streaming."""
    for name, node in cluster.nodes.items():
        if node.raftpg_pid() is None:
            cluster.start_node(name)
    set_pause(cluster, False)
    name = running(cluster)[0]
    status, body = cluster.api_get(name, "/cluster")
    if status == 200 and isinstance(body, dict) and (body.get("raftpg") or {}).get("failover"):
        cluster.api_request(name, "DELETE", "/switchover")
    cluster.wait_healthy(HEALTHY_TIMEOUT)
    yield cluster


SWITCHOVER_GAPS: list[float] = []


def record_gap(what: str, gap: float) -> None:
    SWITCHOVER_GAPS.append(gap)
    print(f"\n{what}: writes unavailable for {gap:.3f}s (all switchovers so far: "
          f"{', '.join(f'{g:.3f}' for g in SWITCHOVER_GAPS)})")


# --- API load --------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_api_load_on_primary_never_costs_the_lease(ready: FaultCluster) -> None:
    primary = ready.wait_healthy(30)
    holder, version = lease_seen_by(ready, primary)
    assert holder == primary
    url = ready.nodes[primary].api_url + "/primary"
    duration, threads = 5.0, 8
    codes: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    end = time.monotonic() + duration

    def hammer() -> None:
        mine: collections.Counter[int] = collections.Counter()
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(url, timeout=2.0) as response:
                    response.read()
                    mine[response.status] += 1
            except urllib.error.HTTPError as exc:
                mine[exc.code] += 1
            except OSError:
                mine[0] += 1
        with lock:
            codes.update(mine)

    workers = [threading.Thread(target=hammer, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    lease_samples = []
    while time.monotonic() < end:
        lease_samples.append(lease_seen_by(ready, primary))
        time.sleep(0.25)
    for worker in workers:
        worker.join(timeout=10)
    total = sum(codes.values())
    print(f"\nGET /primary under load: {total} requests in {duration:g}s = {total / duration:.0f} req/s "
          f"({threads} threads), status codes {dict(codes)}")
    assert total > 0
    assert set(codes) == {200}, f"/primary did not answer 200 throughout: {dict(codes)}"
    assert set(lease_samples) == {(primary, version)}, f"the lease moved under API load: {set(lease_samples)}"
    assert lease_seen_by(ready, primary) == (primary, version)
    assert ready.primary() == primary


# --- switchover ------------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_ctl_switchover_to_named_candidate_loses_nothing(ready: FaultCluster) -> None:
    old = ready.wait_healthy(30)
    candidate = sorted(n for n in ready.nodes if n != old)[-1]
    with SafetyChecker(ready) as checker:
        wait_writer_going(checker)
        started = time.monotonic()
        out = ctl_ok(ready, "switchover", "--leader", old, "--candidate", candidate, "--force", via=old)
        assert f'Successfully switched over to "{candidate}"' in out, out
        assert ready.wait_primary(30, exclude=old) == candidate
        wait_acked_on(checker, ready.nodes[candidate].ports.pg, started)
        gap = checker.writer.max_gap(started - 1.0)
        checker.verify()
    record_gap("ctl switchover", gap)
    assert gap < ready.ttl, f"writes were unavailable for {gap:.1f}s, more than ttl {ready.ttl}"
    status, history = ready.api_get(candidate, "/history")
    assert status == 200 and history and history[-1][4] == candidate, history
    assert ready.wait_healthy(HEALTHY_TIMEOUT) == candidate, "the old primary did not rejoin as a replica"


@pytest.mark.timeout(150)
def test_scheduled_switchover_waits_for_its_time_and_a_cancelled_one_never_happens(ready: FaultCluster) -> None:
    old = ready.wait_healthy(30)
    candidate = sorted(n for n in ready.nodes if n != old)[0]
    at = time.time() + 6.0
    status, body = ready.api_request(old, "POST", "/switchover",
                                     {"leader": old, "candidate": candidate, "scheduled_at": iso(at)})
    assert status == 202, body
    scheduled = cluster_doc(ready, old).get("scheduled_switchover")
    assert scheduled is not None and scheduled["from"] == old and scheduled["to"] == candidate, scheduled
    postmaster = ready.nodes[old].postmaster_pid()
    samples = 0
    while time.time() < at - 0.3:
        code = ready.api_get(old, "/primary", timeout=1.0)[0]
        observed = time.time()
        if observed < at:
            assert code == 200, f"{old} stopped being primary {at - observed:.2f}s before the scheduled time"
            assert ready.nodes[old].postmaster_pid() == postmaster, "PostgreSQL was stopped before its time"
            samples += 1
        time.sleep(0.1)
    assert samples > 10
    new = ready.wait_primary(40, exclude=old)
    moved_at = time.time()
    assert new == candidate
    assert moved_at >= at
    print(f"\nscheduled switchover: new primary answering {moved_at - at:.2f}s after the scheduled time")
    assert "scheduled_switchover" not in cluster_doc(ready, new)
    assert ready.wait_healthy(HEALTHY_TIMEOUT) == new

    # A second one, cancelled before its time, never happens.
    holder, version = lease_seen_by(ready, new)
    assert holder == new
    target = sorted(n for n in ready.nodes if n != new)[0]
    at = time.time() + 4.0
    status, body = ready.api_request(new, "POST", "/switchover",
                                     {"leader": new, "candidate": target, "scheduled_at": iso(at)})
    assert status == 202, body
    status, body = ready.api_request(target, "DELETE", "/switchover")
    assert status == 200, body
    for name in ready.nodes:
        wait_for(lambda name=name: "scheduled_switchover" not in cluster_doc(ready, name), 10,  # type: ignore[misc]
                 f"{name} to see the cancellation")
    postmaster = ready.nodes[new].postmaster_pid()
    until = at + 4 * ready.loop_wait + 1.0
    while time.time() < until:
        assert ready.api_get(new, "/primary", timeout=1.0)[0] == 200, "the cancelled switchover ran anyway"
        time.sleep(0.2)
    assert ready.primary() == new
    assert ready.nodes[new].postmaster_pid() == postmaster
    for name in ready.nodes:
        assert lease_seen_by(ready, name) == (new, version)
    status, body = ready.api_request(new, "DELETE", "/switchover")
    assert status == 404, body


# --- dynamic configuration -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_edit_config_reaches_every_member(ready: FaultCluster) -> None:
    ready.wait_healthy(30)
    before = {name: show(ready, name, "work_mem") for name in ready.nodes}
    assert "8MB" not in before.values(), before
    ctl_ok(ready, "edit-config", "--pg", "work_mem=8MB", "--force")
    assert cluster_doc(ready, running(ready)[0])["raftpg"]["config_version"] > 0
    for name in ready.nodes:
        wait_for(lambda name=name: show(ready, name, "work_mem") == "8MB", 30,  # type: ignore[misc]
                 f"work_mem = 8MB on {name}")


def pending_in_list(cluster: FaultCluster) -> dict[str, bool]:
    import json

    records = json.loads(ctl_ok(cluster, "list", "-e", "--format", "json"))
    return {r["Member"]: r.get("Pending restart") == "*" for r in records}


@pytest.mark.timeout(180)
def test_restart_only_parameter_is_pending_until_ctl_restart_pending(ready: FaultCluster) -> None:
    primary = ready.wait_healthy(30)
    assert {show(ready, n, "shared_buffers") for n in ready.nodes} == {"16MB"}
    ctl_ok(ready, "edit-config", "--pg", "shared_buffers=24MB", "--force")
    wait_for(lambda: all(pending_in_list(ready).values()), 30, "every member flagged Pending restart")
    assert {show(ready, n, "shared_buffers") for n in ready.nodes} == {"16MB"}, "restarted without being asked"
    out = ctl_ok(ready, "restart", "--pending", "--force")
    for name in ready.nodes:
        assert f"Success: restart on member {name}" in out, out
    assert {show(ready, n, "shared_buffers") for n in ready.nodes} == {"24MB"}
    wait_for(lambda: not any(pending_in_list(ready).values()), 30, "the Pending restart flags to clear")
    assert ready.wait_healthy(HEALTHY_TIMEOUT) == primary
    result = ctl(ready, "restart", "--pending", "--force")
    assert result.returncode == 1 and "no member matches" in result.stderr, result


# --- reinit ----------------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_ctl_reinit_rebuilds_a_replica(ready: FaultCluster) -> None:
    primary = ready.wait_healthy(30)
    replica = sorted(n for n in ready.nodes if n != primary)[0]
    node = ready.nodes[replica]

    def moved_dirs() -> set[Path]:
        return set(node.data_dir.parent.glob(f"{node.data_dir.name}.*.moved"))

    before = moved_dirs()
    old_postmaster = node.postmaster_pid()
    sysid = ready.api_get(replica, "/patroni")[1]["database_system_identifier"]
    with psycopg.connect(ready.dsn(primary), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS reinit_marker (v text)")
        conn.execute("INSERT INTO reinit_marker VALUES ('before reinit')")
    out = ctl_ok(ready, "reinit", replica, "--force", "--wait", via=primary)
    assert "Reinitialize is completed" in out, out
    new_dirs = moved_dirs() - before
    assert len(new_dirs) == 1, f"expected one moved-aside data directory, found {new_dirs}"
    assert (new_dirs.pop() / "PG_VERSION").exists()
    wait_for(lambda: streams(ready, primary, replica), 60, f"{replica} to stream again")
    assert node.postmaster_pid() not in (None, old_postmaster)
    assert ready.api_get(replica, "/patroni")[1]["database_system_identifier"] == sysid
    with psycopg.connect(ready.dsn(replica), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM reinit_marker WHERE v = 'before reinit'").fetchone() == (1,)
    assert ready.wait_healthy(HEALTHY_TIMEOUT) == primary


# --- pause -----------------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_pause_means_no_failover_and_no_restart_until_resume(ready: FaultCluster) -> None:
    primary = ready.wait_healthy(30)
    holder, version = lease_seen_by(ready, primary)
    assert holder == primary
    ctl_ok(ready, "pause", "--wait")
    for name in ready.nodes:
        assert ready.api_get(name, "/patroni")[1]["pause"] is True
    assert "Maintenance mode: on" in ctl_ok(ready, "list")
    ready.kill_postmaster(primary)
    node = ready.nodes[primary]
    wait_for(lambda: node.postmaster_pid() is None, 10, "the postmaster to be gone")
    # Health answers come from the status the HA loop caches, invalidated within 100 ms.
    wait_for(lambda: ready.api_get(primary, "/primary", timeout=1.0)[0] == 503, 2,
             "/primary to say 503 once the postmaster is gone")
    replicas = [n for n in ready.nodes if n != primary]
    watch_until = time.monotonic() + ready.ttl + 3.0
    while time.monotonic() < watch_until:
        assert node.postmaster_pid() is None, "PostgreSQL was restarted while paused"
        assert ready.primaries() == [], "someone answers /primary while paused with the primary down"
        for name in replicas:
            assert lease_seen_by(ready, name) == (primary, version), "the lease moved while paused"
        time.sleep(0.25)
    ctl_ok(ready, "resume", "--wait")
    new = ready.wait_healthy(HEALTHY_TIMEOUT)
    if new == primary:
        print(f"\nresume: PostgreSQL restarted in place on {primary}")
        assert lease_seen_by(ready, new) == (primary, version)
    else:
        print(f"\nresume: {primary} was down longer than primary_start_timeout; {new} took over")
    assert ready.primaries() == [new]


@pytest.mark.timeout(150)
def test_manual_switchover_works_while_paused(ready: FaultCluster) -> None:
    old = ready.wait_healthy(30)
    candidate = sorted(n for n in ready.nodes if n != old)[0]
    ctl_ok(ready, "pause", "--wait")
    try:
        with SafetyChecker(ready) as checker:
            wait_writer_going(checker)
            started = time.monotonic()
            out = ctl_ok(ready, "switchover", "--candidate", candidate, "--force", via=candidate)
            assert f'Successfully switched over to "{candidate}"' in out, out
            assert ready.wait_primary(30, exclude=old) == candidate
            wait_acked_on(checker, ready.nodes[candidate].ports.pg, started)
            gap = checker.writer.max_gap(started - 1.0)
            checker.verify()
        record_gap("switchover while paused", gap)
        assert cluster_doc(ready, candidate)["pause"] is True, "the switchover resumed the cluster"
    finally:
        ctl(ready, "resume", "--wait")
    assert ready.wait_healthy(HEALTHY_TIMEOUT) == candidate


@pytest.mark.timeout(240)
def test_rolling_restart_under_pause_loses_nothing(ready: FaultCluster) -> None:
    primary = ready.wait_healthy(30)
    replicas = sorted(n for n in ready.nodes if n != primary)
    ctl_ok(ready, "pause", "--wait")
    try:
        with SafetyChecker(ready) as checker:
            wait_writer_going(checker)
            for name in replicas:
                assert ready.stop_node(name) == 0
                ready.start_node(name)
                wait_for(lambda name=name: streams(ready, primary, name), 30,  # type: ignore[misc]
                         f"{name} to stream again after its raftpg restarted under pause")
            target = replicas[0]
            started = time.monotonic()
            ctl_ok(ready, "switchover", "--candidate", target, "--force", via=target)
            assert ready.wait_primary(30, exclude=primary) == target
            wait_acked_on(checker, ready.nodes[target].ports.pg, started)
            record_gap("switchover in a rolling restart", checker.writer.max_gap(started - 1.0))
            assert ready.stop_node(primary) == 0
            ready.start_node(primary)
            ctl_ok(ready, "resume", "--wait", via=target)
            assert ready.wait_healthy(HEALTHY_TIMEOUT) == target
            wait_acked_on(checker, ready.nodes[target].ports.pg, time.monotonic())
            checker.verify()
    finally:
        set_pause(ready, False)
