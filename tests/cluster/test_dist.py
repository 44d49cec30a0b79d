"""The built single file, provisioned like a VM: three network-namespace hosts set up by
packaging/provision.sh, nodes run from dist/raftpg alone, as postgres, in a clean environment:
bootstrap, READY=1 to the service manager, kill -9 of the primary's host, failover, rejoin.

The binary is built once per test session (`make dist`, incremental) unless RAFTPG_DIST names a
prebuilt one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from raftpg.cli.cluster_secrets import ClusterSecrets
from raftpg.fence.client import read_record
from raftpg.poll import wait_for
from tests.cluster.conftest import scratch_dir
from tests.cluster.dist_hosts import CHECKOUT, OS_USER, PG_PORT, DistCluster, DistHost, clean_env, rss_kib
from tests.cluster.netns import NetnsUnavailable, check_available

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

BUILD_TIMEOUT = 900
HEALTHY_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def dist_binary() -> Path:
    prebuilt = os.environ.get("RAFTPG_DIST")
    if prebuilt:
        return Path(prebuilt).resolve()
    if shutil.which("make") is None:
        pytest.skip("`make` is not installed: cannot run `make dist` (apt-get install make)")
    started = time.monotonic()
    done = subprocess.run(["make", "-C", str(CHECKOUT), "dist"], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT, check=False)
    assert done.returncode == 0, f"make dist failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    binary = CHECKOUT / "dist" / "raftpg"
    print(f"\nmake dist: {time.monotonic() - started:.1f}s, {binary.stat().st_size / 1e6:.1f} MB")
    return binary


@pytest.fixture(scope="module")
def provisioned(request: pytest.FixtureRequest, dist_binary: Path) -> Iterator[tuple[DistCluster, ClusterSecrets]]:
    try:
        check_available()
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))
    base = scratch_dir("raftpg-dist-")
    cluster = DistCluster(binary=dist_binary, base=base)
    try:
        cluster.create()
        secrets_path = base / "cluster-secrets.yml"
        done = subprocess.run([str(dist_binary), "config", "secrets", "-o", str(secrets_path)], cwd=base,
                              env=clean_env(base), capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        cluster.provision(secrets_path)
        yield cluster, ClusterSecrets.load(secrets_path)
    finally:
        cluster.stop()
        if request.session.testsfailed:
            print(f"\ndist cluster kept in {base}\n{cluster.logs()}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _dsn(host: DistHost, secrets: ClusterSecrets) -> str:
    return (f"host={host.address} port={PG_PORT} user={secrets.superuser.username} "
            f"password={secrets.superuser.password} dbname=postgres connect_timeout=3")


def test_provision_installs_binary_config_and_unit(provisioned: tuple[DistCluster, ClusterSecrets]) -> None:
    cluster, secrets = provisioned
    for host in cluster.hosts:
        assert host.binary.read_bytes() == cluster.binary.read_bytes()
        info = host.config.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == pwd.getpwnam(OS_USER).pw_uid
        text = host.config.read_text()
        assert f"self_addr: {host.address}:5010" in text
        assert secrets.raft_password in text
        unit = host.unit.read_text()
        assert f"ExecStart={host.binary} run -c {host.config}" in unit
        assert "Type=notify" in unit and f"User={OS_USER}" in unit


def test_binary_cluster_bootstraps_and_notifies_ready(provisioned: tuple[DistCluster, ClusterSecrets]) -> None:
    cluster, secrets = provisioned
    started = time.monotonic()
    primary = cluster.start_stopped().wait_healthy(HEALTHY_TIMEOUT)
    ready_after = time.monotonic() - started
    for host in cluster.hosts:
        messages = wait_for(lambda h=host: [m for m in h.notifications() if "READY=1" in m] or None,  # type: ignore[misc]
                            30, f"READY=1 from {host.name}")
        assert messages
        argv = Path(f"/proc/{host.process.pid}/cmdline").read_bytes().split(b"\0") if host.process else []
        assert str(host.binary).encode() in argv
    with psycopg.connect(_dsn(primary, secrets), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    # The primary's fence runs from the same installed file, as its hidden `fence` subcommand.
    fence = wait_for(lambda: read_record(primary.raft_dir), 30, f"{primary.name}'s fence")
    fence_argv = Path(f"/proc/{fence.pid}/cmdline").read_bytes().split(b"\0")
    assert fence_argv[:2] == [str(primary.binary).encode(), b"fence"], fence_argv
    # systemd's ExecReload signals the main PID: the bootloader, which passes it on to raftpg.
    assert primary.process is not None
    primary.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: " in primary.log.read_text(errors="replace") or None, 60,
             f"{primary.name} reloading on SIGHUP")
    assert "SIGHUP: reload failed" not in primary.log.read_text(errors="replace")
    assert primary.process.poll() is None
    rss = {h.name: rss_kib(h.process.pid) for h in cluster.hosts if h.process is not None}
    print(f"\ndist/raftpg: healthy {ready_after:.1f}s after start; idle raftpg RSS per node (KiB): {rss}")


def test_kill9_of_the_primary_host_fails_over_and_it_rejoins(provisioned: tuple[DistCluster, ClusterSecrets]) -> None:
    cluster, secrets = provisioned
    old = cluster.start_stopped().wait_healthy(HEALTHY_TIMEOUT)
    # Quorum mode (config init's default): an acknowledged commit survives the primary's loss.
    with psycopg.connect(_dsn(old, secrets), autocommit=True) as conn:
        conn.execute("CREATE TABLE dist_smoke (v text)")
        conn.execute("INSERT INTO dist_smoke VALUES ('before failover')")
    cluster.crash(old)
    assert not cluster.namespace_pids(old)

    def new_primary() -> DistHost | None:
        found = [h for h in cluster.primaries() if h is not old]
        return found[0] if len(found) == 1 else None

    new = wait_for(new_primary, 60, "a new primary after kill -9 of the old one's host")
    cluster.start(old)
    wait_for(lambda: old.name in cluster.streaming(new) or None, HEALTHY_TIMEOUT,
             f"{old.name} streaming again from {new.name}")
    assert [h.name for h in cluster.primaries()] == [new.name]
    with psycopg.connect(_dsn(new, secrets), autocommit=True) as conn:
        rows = conn.execute("SELECT v FROM dist_smoke").fetchall()
        conn.execute("CREATE TABLE IF NOT EXISTS dist_after (v text)")
        conn.execute("INSERT INTO dist_after VALUES ('after failover')")
    assert rows == [("before failover",)]

    def replicated() -> bool | None:
        try:
            with psycopg.connect(_dsn(old, secrets), autocommit=True) as conn:
                return conn.execute("SELECT count(*) FROM dist_after").fetchone() == (1,) or None
        except psycopg.Error:
            return None

    wait_for(replicated, 60, f"the rejoined {old.name} replaying the new primary's writes")



def test_kill9_of_raftpg_alone_its_fence_still_stops_postgresql(
        provisioned: tuple[DistCluster, ClusterSecrets]) -> None:
    """The fence is started from the same single file; killing raftpg (whose bootloader then
    removes its unpacked files) must not take the fence with it: it stops PostgreSQL by the
    lease deadline, so the new primary is never a second writable one."""
    cluster, _ = provisioned
    old = cluster.start_stopped().wait_healthy(HEALTHY_TIMEOUT)
    fence = wait_for(lambda: read_record(old.raft_dir), 30, f"{old.name}'s fence")
    assert old.process is not None
    children = Path(f"/proc/{old.process.pid}/task/{old.process.pid}/children").read_text().split()
    assert len(children) == 1, children  # the bootloader's one child: raftpg's Python process
    maps = Path(f"/proc/{children[0]}/maps").read_text().split()
    unpacked = Path(next(word for word in maps if "libpython" in word)).parent  # its private /tmp/_MEI* dir
    os.kill(int(children[0]), signal.SIGKILL)
    old.process.wait(timeout=30)  # the bootloader removes what it unpacked, then exits
    assert not unpacked.exists(), f"{unpacked} left behind"
    gone = wait_for(lambda: not Path(f"/proc/{fence.postmaster_pid}").exists() or None, 60,
                    f"{old.name}'s fence stopping its PostgreSQL after raftpg was killed")
    assert gone
    fence_log = (old.raft_dir / "fence.log").read_text(errors="replace")
    new = wait_for(lambda: next((h for h in cluster.primaries() if h is not old), None), 60, "a new primary")
    cluster.start(old)
    wait_for(lambda: old.name in cluster.streaming(new) or None, HEALTHY_TIMEOUT,
             f"{old.name} streaming again from {new.name}")
    assert "Error" not in fence_log and "Traceback" not in fence_log, fence_log
