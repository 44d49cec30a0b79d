"""raftpg.postgres against real PostgreSQL 15: instance control, replication, rewind, the fence.

PostgreSQL refuses to run as root, and the daemon runs as the database OS user, so every
operation runs in a short-lived driver process as user postgres: this module executed as a
script (see _driver_main at the bottom) performs one PostgresInstance / FenceClient call and
prints the result as JSON. The test process (root) only inspects processes and files.

One primary (n1) is initdb'd once per module; n2 and n3 are cloned from it. The last test
fails over to n2 and rewinds n1, so it runs last (pytest keeps file order).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from raftpg.clock import boottime
from raftpg.devcluster import free_ports
from raftpg.poll import wait_for
from raftpg.postgres.rewind import RewindOutcome, RewindResult
from raftpg.procfs import children_of, process_alive

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
SU_PASSWORD = "su-pass'word\\x"  # quotes and backslashes on purpose
REPL_PASSWORD = "repl pass"
DYNAMIC = {"fsync": "off", "shared_buffers": "16MB", "max_connections": "20", "work_mem": "4MB"}
DRIVER_TIMEOUT = 60.0

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


# ---------------------------------------------------------------------------------------------
# Test side: nodes, the driver call, process inspection


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    port: int
    base: Path
    driver: Driver

    @property
    def data_dir(self) -> Path:
        return self.base / self.name / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / self.name / "sock"

    @property
    def run_dir(self) -> Path:
        return self.base / self.name / "run"

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "base": str(self.base)}


def _postgres_process(base: Path, *argv: str, **kwargs: Any) -> dict[str, Any]:
    """Arguments for running this module as a driver process as user postgres."""
    return {
        "args": [sys.executable, __file__, *argv],
        "user": "postgres",
        "group": "postgres",
        "extra_groups": [],
        "cwd": base,
        "env": {**os.environ, "HOME": str(base), "PYTHONDONTWRITEBYTECODE": "1"},
        "text": True,
        **kwargs,
    }


class Driver:
    """A long-lived driver process (as postgres) answering one JSON request per line."""

    def __init__(self, base: Path) -> None:
        self.log_path = base / "driver.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                **_postgres_process(base, "--serve", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
            )

    def call(self, node: Node, op: str, args: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"node": node.spec(), "op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], DRIVER_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            tail = self.log_path.read_text()[-3000:]
            raise DriverError(f"driver gave no answer to {op} within {DRIVER_TIMEOUT}s:\n{tail}")
        return _reply(op, line, "")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def drive(node: Node, op: str, **args: Any) -> Any:
    """Run one operation as user postgres in the module's driver; raise DriverError on failure."""
    return node.driver.call(node, op, args)


def drive_once(node: Node, op: str, **args: Any) -> Any:
    """Run one operation in a driver process of its own (for operations that outlive it)."""
    request = json.dumps({"node": node.spec(), "op": op, "args": args})
    proc = subprocess.run(**_postgres_process(node.base, request, capture_output=True, timeout=DRIVER_TIMEOUT))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise DriverError(f"driver {op} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return _reply(op, lines[-1], proc.stderr)


def _reply(op: str, line: str, stderr: str) -> Any:
    reply = json.loads(line)
    if not reply["ok"]:
        raise DriverError(f"{op} failed: {reply['error']}: {reply['message']}\n{stderr[-3000:]}")
    return reply["result"]


class DriverError(Exception):
    pass


def free_port() -> int:
    return free_ports(1)[0]


def status(node: Node) -> dict[str, Any]:
    result: dict[str, Any] = drive(node, "status")
    return result


def sql(node: Node, query: str, params: list[Any] | None = None) -> list[list[Any]]:
    rows: list[list[Any]] = drive(node, "execute", sql=query, params=params)
    return rows


def start(node: Node, upstream: Node | None = None, slot: str | None = None, *, standby: bool = True) -> None:
    drive(node, "start", standby=standby, upstream=upstream.port if upstream else None, slot=slot)


def ensure_running_standby(node: Node, upstream: Node) -> int:
    if drive(node, "pid") is None:
        start(node, upstream)
    wait_for(lambda: status(node)["running"], 30, f"{node.name} accepting connections", 0.2)
    pid: int = drive(node, "pid")
    return pid


def kill_leftovers(base: Path) -> None:
    """Teardown: SIGKILL every postmaster (and each of its backends) and fence of these tests."""
    victims: list[int] = []
    for pidfile in base.glob("*/run/fence.pid"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            victims.append(int(json.loads(pidfile.read_text())["pid"]))
    for pidfile in base.glob("*/data/postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().split()[0])
            if process_alive(pid) and os.readlink(f"/proc/{pid}/cwd") == str(pidfile.parent):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)  # no new backends while we collect them
                victims += [*children_of(pid), pid]  # every backend leads its own process group
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def driver(base_dir: Path) -> Iterator[Driver]:
    process = Driver(base_dir)
    try:
        yield process
    finally:
        process.close()


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    if not (BIN_DIR / "postgres").exists():
        pytest.skip("PostgreSQL 15 binaries not installed")
    base = Path(tempfile.mkdtemp(prefix="raftpg-pgi-"))
    entry = pwd.getpwnam("postgres")
    os.chown(base, entry.pw_uid, entry.pw_gid)
    base.chmod(0o700)
    try:
        yield base
    finally:
        try:
            kill_leftovers(base)
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def n1(base_dir: Path, driver: Driver) -> Node:
    node = Node("n1", free_port(), base_dir, driver)
    drive(node, "initdb", options=["--no-sync", "--encoding=UTF8", "--locale=C"])
    start(node, standby=False)
    drive(node, "bootstrap_roles")
    return node


@pytest.fixture(scope="module")
def n2(n1: Node) -> Node:
    node = Node("n2", free_port(), n1.base, n1.driver)
    drive(n1, "ensure_slots", names=["n2"])
    drive(node, "basebackup", source=n1.port, slot="n2")
    start(node, n1, "n2")
    return node


@pytest.fixture(scope="module")
def n3(n1: Node) -> Node:
    node = Node("n3", free_port(), n1.base, n1.driver)
    drive(node, "basebackup", source=n1.port)
    start(node, n1)
    return node


# ---------------------------------------------------------------------------------------------
# A single server


def test_primary_status_and_owned_files(n1: Node) -> None:
    st = status(n1)
    assert st["running"] is True
    assert st["in_recovery"] is False
    assert st["timeline"] == 1
    assert st["lsn"] > 0
    assert st["receive_lsn"] is None and st["wal_receiver"] is None
    assert st["server_version"] // 10000 == 15
    assert st["synchronous_standby_names"] == ""
    assert st["pending_restart"] is False
    assert st["postmaster_pid"] == drive(n1, "pid")
    control = drive(n1, "controldata")
    assert st["system_identifier"] == control["system_identifier"]
    assert control["wal_log_hints"] is True

    conf_text = (n1.data_dir / "postgresql.conf").read_text()
    assert conf_text.startswith("# Managed by raftpg")
    assert f"port = '{n1.port}'" in conf_text
    assert "primary_conninfo" not in conf_text
    assert (n1.data_dir / "postgresql.base.conf").exists()  # initdb's original, included
    assert (n1.data_dir / "pg_hba.conf").read_text().startswith("# Managed by raftpg")
    assert (n1.data_dir / "postgresql.conf").stat().st_mode & 0o077 == 0
    assert not (n1.data_dir / "standby.signal").exists()
    assert sql(
        n1, "SELECT rolname, rolreplication FROM pg_roles WHERE rolname = %s", ["replicator"]
    ) == [["replicator", True]]
    drive(n1, "bootstrap_roles")  # idempotent


def test_data_dir_states_and_refusals(n1: Node, base_dir: Path) -> None:
    assert drive(n1, "state") == "initialized"
    assert drive(dataclasses.replace(n1, name="nope"), "state") == "missing"
    empty = dataclasses.replace(n1, name="empty")
    junk = dataclasses.replace(n1, name="junk")
    for node in (empty, junk):
        node.data_dir.mkdir(parents=True)
    (junk.data_dir / "stray").write_text("x")
    entry = pwd.getpwnam("postgres")
    for path in (empty.data_dir.parent, empty.data_dir, junk.data_dir.parent, junk.data_dir):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    assert drive(empty, "state") == "empty"
    assert drive(junk, "state") == "invalid"
    with pytest.raises(DriverError, match="cannot initdb"):
        drive(n1, "initdb", options=[])
    with pytest.raises(DriverError, match="cannot basebackup"):
        drive(junk, "basebackup", source=n1.port)
    nothing_there = dataclasses.replace(n1, name="clone", port=free_port())
    with pytest.raises(DriverError, match="pg_basebackup exited"):
        drive(nothing_there, "basebackup", source=nothing_there.port)
    assert drive(nothing_there, "state") == "missing"  # the partial copy is cleaned up
    with pytest.raises(DriverError, match="already runs"):
        start(n1, standby=False)
    with pytest.raises(DriverError, match=r"postmaster .* is running"):
        drive(n1, "rewind", source=n1.port)
    with pytest.raises(DriverError, match=r"postmaster .* runs on it"):
        drive(n1, "move_aside")


def test_stop_and_start_again(n1: Node) -> None:
    pid = drive(n1, "pid")
    drive(n1, "stop", mode="fast")
    assert not process_alive(pid)
    st = status(n1)
    assert st["running"] is False and st["postmaster_pid"] is None
    assert drive(n1, "controldata")["cluster_state"] == "shut down"
    drive(n1, "stop", mode="fast")  # stopping a stopped server is a no-op
    start(n1, standby=False)
    assert status(n1)["running"] is True


def test_failed_start_reports_the_server_log(n3: Node) -> None:
    drive(n3, "stop", mode="fast")
    with pytest.raises(DriverError, match=r"(?s)did not start.*invalid value for parameter"):
        drive(n3, "start", standby=True, upstream=None, slot=None, extra={"work_mem": "lots"})
    assert drive(n3, "pid") is None


# ---------------------------------------------------------------------------------------------
# Replication


def test_replica_streams_through_its_slot(n1: Node, n2: Node) -> None:
    wait_for(lambda: status(n2)["wal_receiver"] is not None, 20, "n2 streaming", 0.2)
    st = status(n2)
    assert st["running"] and st["in_recovery"] is True
    assert st["wal_receiver"]["status"] == "streaming"
    assert st["wal_receiver"]["upstream"] == f"127.0.0.1:{n1.port}"
    assert st["timeline"] == 1
    assert st["system_identifier"] == status(n1)["system_identifier"]
    assert (n2.data_dir / "standby.signal").exists()

    primary = status(n1)
    rows = {row["application_name"]: row for row in primary["replication"]}
    assert rows["n2"]["state"] == "streaming"
    assert rows["n2"]["sync_state"] == "async"
    slots = {slot["name"]: slot for slot in drive(n1, "list_slots")}
    assert slots["n2"]["active"] is True and slots["n2"]["slot_type"] == "physical"

    sql(n1, "CREATE TABLE IF NOT EXISTS t (v text)")
    sql(n1, "INSERT INTO t VALUES ('from n1')")
    written = status(n1)["lsn"]
    wait_for(lambda: (status(n2)["replay_lsn"] or 0) >= written, 20, "n2 replaying n1's write", 0.1)
    assert ["from n1"] in sql(n2, "SELECT v FROM t")
    assert status(n2)["lsn"] >= written


def test_ensure_slots_creates_and_drops(n1: Node, n2: Node) -> None:
    sql(n1, "SELECT pg_create_physical_replication_slot('stale')")
    sql(n1, "SELECT pg_create_physical_replication_slot('kept')")
    changes = drive(n1, "ensure_slots", names=["n1", "n2", "New-Member"], keep=["kept"])
    assert changes == {"created": ["new_member"], "dropped": ["stale"]}
    names = {slot["name"] for slot in drive(n1, "list_slots")}
    assert names == {"n2", "new_member", "kept"}  # never a slot for ourselves
    changes = drive(n1, "ensure_slots", names=["n2"])
    assert changes == {"created": [], "dropped": ["kept", "new_member"]}


def test_reload_changes_parameters_and_keeps_the_upstream(n1: Node, n2: Node) -> None:
    changed = {"work_mem": "7MB", "shared_buffers": "32MB"}
    drive(n2, "reload", extra=changed)
    wait_for(lambda: sql(n2, "SHOW work_mem") == [["7MB"]], 10, "work_mem reloaded")
    assert status(n2)["pending_restart"] is True  # shared_buffers needs a restart
    pid = drive(n2, "pid")
    drive(n2, "restart", upstream=n1.port, slot="n2", extra=changed)
    assert drive(n2, "pid") != pid
    assert sql(n2, "SHOW shared_buffers") == [["32MB"]]
    assert status(n2)["pending_restart"] is False
    drive(n2, "restart", upstream=n1.port, slot="n2")
    assert sql(n2, "SHOW work_mem") == [["4MB"]]
    wait_for(lambda: status(n2)["wal_receiver"] is not None, 20, "n2 streaming again", 0.1)
    drive(n2, "reload")  # keeps the upstream it has
    assert conninfo_to_dict(sql(n2, "SHOW primary_conninfo")[0][0])["port"] == str(n1.port)
    assert sql(n2, "SHOW primary_slot_name") == [["n2"]]
    assert status(n2)["wal_receiver"]["status"] == "streaming"


def test_follow_switches_the_upstream_of_a_running_standby(n1: Node, n2: Node, n3: Node) -> None:
    pid = ensure_running_standby(n3, n1)
    drive(n3, "follow", upstream=n2.port)  # cascading from the other standby
    upstream = f"127.0.0.1:{n2.port}"

    def streams_from(address: str) -> bool:
        receiver = status(n3)["wal_receiver"]
        return receiver is not None and receiver["status"] == "streaming" and receiver["upstream"] == address

    wait_for(lambda: streams_from(upstream), 30, "n3 streaming from n2", 0.2)
    assert drive(n3, "pid") == pid  # no restart
    drive(n3, "follow", upstream=n1.port)
    wait_for(lambda: streams_from(f"127.0.0.1:{n1.port}"), 30, "n3 streaming from n1 again", 0.2)
    with pytest.raises(DriverError, match="not in standby mode"):
        drive(n1, "follow", upstream=n2.port)


# ---------------------------------------------------------------------------------------------
# The fence


def fence_pid(node: Node) -> int | None:
    try:
        pid = int(json.loads((node.run_dir / "fence.pid").read_text())["pid"])
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return pid if process_alive(pid) else None


def test_unfed_fence_stops_postgres_after_the_deadline(n1: Node, n3: Node) -> None:
    import psycopg

    pid = ensure_running_standby(n3, n1)
    client = psycopg.connect(
        host="127.0.0.1", port=n3.port, user="postgres", password=SU_PASSWORD, dbname="postgres"
    )
    backend = client.execute("SELECT pg_backend_pid()").fetchone()
    assert backend is not None
    processes = {*children_of(pid), pid}
    assert backend[0] in processes
    assert os.getpgid(pid) == pid  # pg_ctl made the postmaster a group leader

    deadline = boottime() + 1.5
    fence = drive(n3, "fence_arm", deadline=deadline)
    assert process_alive(fence)
    while boottime() < deadline - 0.15:
        assert process_alive(pid), "fence stopped PostgreSQL before the deadline"
        time.sleep(0.05)
    wait_for(lambda: not any(process_alive(p) for p in processes), deadline - boottime() + 3.0, "fenced processes gone")
    assert boottime() >= deadline
    client.close()
    wait_for(lambda: not process_alive(fence), 3, "fence exit")
    log = (n3.run_dir / "fence.log").read_text()
    assert "fencing: lease deadline passed" in log
    assert "without renewal" in log


def test_fence_kills_a_frozen_postmaster_and_every_backend(n1: Node, n3: Node) -> None:
    """A frozen postmaster cannot pass the immediate shutdown on, and a busy backend does not
    notice its postmaster's death: the fence must SIGKILL every child itself (each child is
    leader of its own process group, so killing the postmaster's group would miss them)."""
    import psycopg

    pid = ensure_running_standby(n3, n1)
    client = psycopg.connect(
        host="127.0.0.1", port=n3.port, user="postgres", password=SU_PASSWORD, dbname="postgres"
    )
    row = client.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    backend = int(row[0])
    assert os.getpgid(backend) == backend != os.getpgid(pid)
    busy = threading.Thread(target=_spin_until_killed, args=(client,), daemon=True)
    busy.start()
    try:
        wait_for(lambda: _proc_state(backend) == "R", 5, "backend spinning", 0.02)
        processes = {*children_of(pid), pid}
        deadline = boottime() + 1.0
        drive(n3, "fence_arm", deadline=deadline)
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: not any(process_alive(p) for p in processes), deadline - boottime() + 3.0,
                 "all processes gone")
        assert boottime() >= deadline
        busy.join(5)
        log = (n3.run_dir / "fence.log").read_text()
        assert "still there; SIGKILLed it and its children" in log
    finally:
        if process_alive(backend):
            os.kill(backend, signal.SIGKILL)
        client.close()


def _spin_until_killed(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.execute("DO $$ BEGIN LOOP END LOOP; END $$")


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat[stat.rfind(")") + 2]


def test_fed_fence_keeps_postgres_alive_and_disarms(n1: Node, n3: Node) -> None:
    pid = ensure_running_standby(n3, n1)
    started = boottime()
    result = drive(n3, "fence_feed", ahead=1.0, interval=0.3, duration=3.0, disarm=True)
    assert boottime() - started >= 3.0
    assert result["armed_after_feeding"] is True
    assert result["pid_after"] == result["pid_before"]
    wait_for(lambda: not process_alive(result["pid_before"]), 5, "fence exit after disarm")
    time.sleep(1.3)  # past the last deadline it was fed: a disarmed fence does nothing
    assert process_alive(pid)
    assert "disarmed by raftpg" in (n3.run_dir / "fence.log").read_text()


def test_fence_survives_its_starter_and_is_reused(n1: Node, n3: Node) -> None:
    pid = ensure_running_standby(n3, n1)
    with pytest.raises(DriverError, match="exited -9"):
        drive_once(n3, "fence_arm_and_die", deadline=boottime() + 60)
    fence = fence_pid(n3)
    assert fence is not None, "the fence died with the process that started it"
    assert os.getsid(fence) == fence  # its own session: no signal for the daemon's group reaches it

    # A restarted daemon (another process, another FenceClient) reuses it.
    assert drive_once(n3, "fence_arm", deadline=boottime() + 60) == fence
    info = drive(n3, "fence_info")
    assert info == {"pid": fence, "armed": True, "guarded": pid}
    drive(n3, "fence_disarm")
    assert not process_alive(fence)
    assert drive(n3, "fence_info") == {"pid": None, "armed": False, "guarded": None}
    assert process_alive(pid)


def test_fence_exits_when_postgres_is_gone(n1: Node, n3: Node) -> None:
    ensure_running_standby(n3, n1)
    fence = drive(n3, "fence_arm", deadline=boottime() + 60)
    drive(n3, "stop", mode="fast")
    wait_for(lambda: not process_alive(fence), 3, "fence exit")
    assert "nothing left to guard" in (n3.run_dir / "fence.log").read_text()


def test_stop_kills_a_server_that_does_not_stop_in_time(n1: Node, n3: Node) -> None:
    import psycopg

    pid = ensure_running_standby(n3, n1)
    with psycopg.connect(
        host="127.0.0.1", port=n3.port, user="postgres", password=SU_PASSWORD, dbname="postgres", autocommit=True
    ) as client:
        row = client.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        processes = {*children_of(pid), pid}
        drive(n3, "stop", mode="smart", timeout=1)  # smart waits for our client: never, here
        assert not any(process_alive(p) for p in processes)
    assert drive(n3, "controldata")["cluster_state"] != "shut down"


def test_move_data_dir_aside(n3: Node) -> None:
    drive(n3, "stop", mode="immediate")
    moved = Path(drive(n3, "move_aside"))
    assert moved.name.startswith("data.") and moved.name.endswith(".moved")
    assert (moved / "PG_VERSION").exists()
    assert drive(n3, "state") == "missing"


def test_a_standby_that_cannot_become_consistent_is_left_recovering(n1: Node) -> None:
    """chaos 2026-12-06: `pg_ctl start -w` waited 60 s for a standby whose WAL was gone. A clone without
    its WAL and with no upstream never becomes consistent: start returns after ready_within with the
    postmaster running (it accepts no connections), and following an upstream that has the WAL heals it."""
    node = Node("n4", free_port(), n1.base, n1.driver)
    drive(node, "basebackup", source=n1.port)
    segments = [f for f in (node.data_dir / "pg_wal").iterdir() if f.is_file() and len(f.name) == 24]
    assert segments
    for segment in segments:
        segment.unlink()
    began = time.monotonic()
    assert drive(node, "start", standby=True, upstream=None, slot=None, ready_within=1) == "recovering"
    waited = time.monotonic() - began
    pid = drive(node, "pid")
    assert pid is not None and process_alive(pid)
    st = status(node)
    assert st["running"] is False and st["postmaster_pid"] == pid and st["error"]  # not consistent yet
    assert st["wal_receiver"] is None  # no upstream: nothing streams (read from the process titles)
    drive(node, "follow", upstream=n1.port)  # what the HA loop does for a recovering standby
    wait_for(lambda: status(node)["running"], 30, "n4 consistent once it streams from n1", 0.2)
    assert status(node)["in_recovery"] is True and drive(node, "pid") == pid  # the same postmaster
    drive(node, "stop", mode="fast")
    print(f"\nstart of a standby without its WAL returned after {waited:.1f}s (ready_within 1 s), left recovering")


# ---------------------------------------------------------------------------------------------
# Failover and rejoin (runs last: it turns n2 into the primary)


@pytest.mark.timeout(180)
def test_promote_then_rewind_the_old_primary(n1: Node, n2: Node) -> None:
    system_identifier = status(n1)["system_identifier"]
    drive(n2, "promote")
    st = status(n2)
    assert st["in_recovery"] is False and st["timeline"] == 2
    assert drive(n2, "controldata")["timeline"] == 2  # promote checkpointed: pg_rewind can see it
    assert not (n2.data_dir / "standby.signal").exists()

    # The old primary keeps writing: it diverges from timeline 2.
    sql(n1, "CREATE TABLE diverged AS SELECT generate_series(1, 1000) AS i")
    drive(n1, "stop", mode="immediate")
    assert drive(n1, "controldata")["cluster_state"] == "in production"  # crashed, not clean

    # A source that is not there (a new primary killed a moment ago): told apart, nothing changed.
    unreachable = drive(n1, "rewind", source=free_port())
    assert RewindResult(RewindOutcome(unreachable["outcome"]), unreachable["output"]).source_unreachable
    assert drive(n1, "controldata")["cluster_state"] == "in production"

    result = drive(n1, "rewind", source=n2.port)
    assert result["outcome"] == "rewound", result["output"]
    assert not RewindResult(RewindOutcome(result["outcome"]), result["output"]).source_unreachable
    assert (n1.data_dir / "standby.signal").exists()
    conf_text = (n1.data_dir / "postgresql.conf").read_text()
    assert f"port = '{n1.port}'" in conf_text  # ours, not n2's copy
    assert (n1.data_dir / "pg_hba.conf").read_text().startswith("# Managed by raftpg")

    drive(n2, "ensure_slots", names=["n1"])
    start(n1, n2, "n1")

    def streaming_on_tl2() -> bool:
        st = status(n1)
        receiver = st["wal_receiver"]
        return bool(receiver) and receiver["status"] == "streaming" and st["timeline"] == 2

    wait_for(streaming_on_tl2, 30, "n1 streaming from n2 on timeline 2", 0.2)
    st = status(n1)
    assert st["in_recovery"] is True
    assert st["wal_receiver"]["upstream"] == f"127.0.0.1:{n2.port}"
    assert st["system_identifier"] == system_identifier
    sql(n2, "INSERT INTO t VALUES ('from n2')")
    written = status(n2)["lsn"]
    wait_for(lambda: (status(n1)["replay_lsn"] or 0) >= written, 20, "n1 replaying n2's write", 0.1)
    assert sorted(sql(n1, "SELECT v FROM t")) == [["from n1"], ["from n2"]]
    assert sql(n1, "SELECT to_regclass('diverged') IS NULL") == [[True]]  # the divergence is gone
    rows = {row["application_name"]: row for row in status(n2)["replication"]}
    assert rows["n1"]["state"] == "streaming"

    # On the same timeline as its source, a cleanly stopped standby needs no rewind.
    drive(n1, "stop", mode="fast")
    result = drive(n1, "rewind", source=n2.port)
    assert result["outcome"] == "not needed", result["output"]
    start(n1, n2, "n1")
    wait_for(streaming_on_tl2, 30, "n1 streaming again", 0.2)


# ---------------------------------------------------------------------------------------------
# Driver side: runs as user postgres, one operation per process


def _settings(spec: dict[str, Any], extra: dict[str, str] | None = None) -> Any:
    from raftpg.config import Address, Auth, PostgresSettings

    node_dir = Path(spec["base"]) / spec["name"]
    (node_dir / "sock").mkdir(parents=True, exist_ok=True)
    return PostgresSettings(
        listen=Address("127.0.0.1", spec["port"]),
        connect_address=Address("127.0.0.1", spec["port"]),
        data_dir=node_dir / "data",
        bin_dir=BIN_DIR,
        socket_dir=node_dir / "sock",
        superuser=Auth("postgres", SU_PASSWORD),
        replication=Auth("replicator", REPL_PASSWORD),
        parameters=extra or {},
        pg_hba=(),
    )


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value") and not isinstance(value, int | str | float | bool):
        return value.value  # enums
    return value


async def _run_op(spec: dict[str, Any], op: str, args: dict[str, Any], fences: dict[str, Any]) -> Any:
    from raftpg.config import Address
    from raftpg.fence.client import FenceClient
    from raftpg.postgres.conf import build_parameters
    from raftpg.postgres.instance import PostgresInstance

    settings = _settings(spec, args.get("extra"))
    pg = PostgresInstance(settings, spec["name"])
    # One FenceClient per node and process, as in the daemon.
    fence = fences.setdefault(spec["name"], FenceClient(Path(spec["base"]) / spec["name"] / "run", settings.data_dir))
    params = build_parameters(settings, DYNAMIC)

    def address(port: int | None) -> Address | None:
        return Address("127.0.0.1", port) if port is not None else None

    try:
        match op:
            case "initdb":
                return await pg.initdb(args["options"], timeout=60)
            case "bootstrap_roles":
                return await pg.bootstrap_roles(timeout=10)
            case "start":
                return await pg.start(
                    standby=args["standby"],
                    upstream=address(args["upstream"]),
                    slot=args["slot"],
                    parameters=params,
                    timeout=30,
                    ready_within=args.get("ready_within"),
                )
            case "stop":
                return await pg.stop(args["mode"], timeout=args.get("timeout", 20))
            case "restart":
                return await pg.restart(
                    standby=True, upstream=address(args["upstream"]), slot=args["slot"], parameters=params, timeout=30
                )
            case "status":
                return await pg.status(timeout=5)
            case "controldata":
                return await pg.controldata(timeout=10)
            case "pid":
                return pg.postmaster_pid()
            case "state":
                return pg.data_dir_state()
            case "execute":
                return await pg.execute(args["sql"], args.get("params"), timeout=10)
            case "basebackup":
                source = address(args["source"])
                assert source is not None
                return await pg.basebackup(source, timeout=60, slot=args.get("slot"))
            case "ensure_slots":
                return await pg.ensure_slots(args["names"], timeout=10, keep=args.get("keep", ()))
            case "list_slots":
                return await pg.list_slots(timeout=10)
            case "reload":
                return await pg.reload(params, timeout=10)
            case "follow":
                upstream = address(args["upstream"])
                assert upstream is not None
                return await pg.follow(upstream, None, params, timeout=10)
            case "promote":
                return await pg.promote(timeout=30)
            case "rewind":
                source = address(args["source"])
                assert source is not None
                return await pg.rewind(source, timeout=90)
            case "move_aside":
                return pg.move_data_dir_aside()
            case "fence_arm":
                return await fence.arm(_need_pid(pg), args["deadline"])
            case "fence_arm_and_die":
                await fence.arm(_need_pid(pg), args["deadline"])
                os.kill(os.getpid(), signal.SIGKILL)
            case "fence_feed":
                return await _feed(fence, _need_pid(pg), args)
            case "fence_disarm":
                return await fence.disarm()
            case "fence_info":
                return {"pid": fence.pid(), "armed": fence.is_armed(), "guarded": fence.guarded_pid()}
        raise ValueError(f"unknown op {op}")
    finally:
        await pg.close()


def _need_pid(pg: Any) -> int:
    pid = pg.postmaster_pid()
    if pid is None:
        raise RuntimeError("PostgreSQL is not running")
    return int(pid)


async def _feed(fence: Any, pid: int, args: dict[str, Any]) -> dict[str, Any]:
    from raftpg.clock import boottime as driver_boottime

    pid_before = await fence.arm(pid, driver_boottime() + args["ahead"])
    end = driver_boottime() + args["duration"]
    while driver_boottime() < end:
        await asyncio.sleep(args["interval"])
        assert fence.feed(driver_boottime() + args["ahead"])
    result = {"pid_before": pid_before, "pid_after": fence.pid(), "armed_after_feeding": fence.is_armed()}
    if args["disarm"]:
        await fence.disarm()
    return result


def _answer(runner: asyncio.Runner, request: dict[str, Any], fences: dict[str, Any]) -> str:
    try:
        result = runner.run(_run_op(request["node"], request["op"], request["args"], fences))
        reply = {"ok": True, "result": _jsonable(result)}
    except Exception as exc:
        logging.getLogger("driver").exception("%s failed", request["op"])
        reply = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    return json.dumps(reply, default=str)


def _driver_main(argv: list[str]) -> int:
    """As user postgres: `--serve` answers requests from stdin, else the one in argv[0]."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    fences: dict[str, Any] = {}
    with asyncio.Runner() as runner:
        if argv[0] != "--serve":
            print(_answer(runner, json.loads(argv[0]), fences))
            return 0
        for line in sys.stdin:
            print(_answer(runner, json.loads(line), fences), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_driver_main(sys.argv[1:]))
