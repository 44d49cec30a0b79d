"""The benchmark adapter, driven as /work/shared/bench/failover_bench.py drives it: every subcommand
a separate process, the cluster living on disk between them. A smoke run, so the README's
performance figures stay reproducible from main (bootstrap, one switchover, one failover)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from raftpg.http.client import HttpClient
from raftpg.poll import wait_for
from tests.cluster.conftest import scratch_dir

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]


class Adapter:
    def __init__(self, state_dir: Path) -> None:
        self.env = {**os.environ, "RAFTPG_BENCH_DIR": str(state_dir), "TTL": "5", "LOOP_WAIT": "1",
                    "RETRY_TIMEOUT": "2", "SYNC_MODE": "quorum"}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "benchmarks.raftpg_adapter", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)

    def ok(self, *args: str, timeout: float = 120) -> str:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"adapter {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
        return done.stdout.strip()

    def primary(self) -> str | None:
        done = self.run("primary", timeout=30)
        return done.stdout.strip() if done.returncode == 0 else None

    def ready(self) -> bool:
        return self.run("ready", timeout=30).returncode == 0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def adapter() -> Iterator[Adapter]:
    state = scratch_dir("raftpg-test_bench_adapter-") / "bench"
    bench = Adapter(state)
    try:
        yield bench
    finally:
        bench.run("stop", timeout=120)
        shutil.rmtree(state.parent, ignore_errors=True)


def test_adapter_subcommands_drive_a_cluster_through_switchover_and_failover(adapter: Adapter) -> None:
    adapter.ok("start")
    wait_for(adapter.ready, 90, "adapter ready", interval=0.5)
    first = adapter.primary()
    assert first is not None

    pids = [line.split() for line in adapter.ok("pids").splitlines()]
    assert len([p for p in pids if p[0].startswith("raftpg-")]) == 3, pids
    assert all(p[2] == "tree" for p in pids if p[0].startswith("postgres-")), pids
    wait_for(lambda: "fence-" in adapter.ok("pids") or None, 20, "the primary's fence among the pids")

    dsn = adapter.ok("dsn")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE smoke (id int PRIMARY KEY)")
        conn.execute("INSERT INTO smoke VALUES (1)")
    assert HttpClient(timeout=5).request_blocking("GET", adapter.ok("rest-url")).status == 200
    info = json.loads(adapter.ok("info"))
    assert info["requested"]["synchronous_mode"] == "quorum" and "PostgreSQL" in info["postgres"]

    adapter.ok("switchover", timeout=180)
    second = adapter.primary()
    assert second is not None and second != first

    killed = adapter.ok("kill-node", second)
    assert killed.startswith("event_wall="), killed
    third = wait_for(lambda: (name if (name := adapter.primary()) not in (None, second) else None), 60,
                     "a new primary after kill-node")
    adapter.ok("start-node", second)
    wait_for(adapter.ready, 90, "the killed node to rejoin", interval=0.5)
    assert adapter.primary() == third
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM smoke").fetchone()
    assert row == (1,)

    running = [int(p[1]) for p in (line.split() for line in adapter.ok("pids").splitlines())]
    adapter.ok("stop", timeout=180)
    assert [pid for pid in running if alive(pid)] == []
