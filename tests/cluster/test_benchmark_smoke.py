"""Short runs of the benchmarks no other test drives, through their own command lines, so that
they cannot rot: one postmaster-kill round in quorum mode (0 lost), the side-by-side table
rebuilt from the committed results, and the event loop's CPU and profile on an idle cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.bench_run import run_benchmark

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

REPOSITORY = Path(__file__).resolve().parents[2]


def test_postmaster_kill_one_round(tmp_path: Path) -> None:
    out = tmp_path / "postmaster_kill.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.postmaster_kill", "--rounds", "1", "--out", str(out)],
                          cwd=REPOSITORY, capture_output=True, text=True, timeout=200, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["rounds"]) == 1
    assert result["lost"] == 0
    assert result["rounds"][0]["acknowledged"] > 0


def test_side_by_side_table_from_committed_results(tmp_path: Path) -> None:
    out = tmp_path / "side-by-side.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks.side_by_side", "--table-only", "--out", str(out)],
                          cwd=REPOSITORY, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = out.read_text()
    assert "crash failover" in table and "Patroni" in table
    dry = subprocess.run([sys.executable, "-m", "benchmarks.side_by_side", "--dry-run"], cwd=REPOSITORY,
                         capture_output=True, text=True, timeout=60, check=False)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "failover_bench.py" in dry.stdout


def test_loop_cpu_one_short_round(tmp_path: Path) -> None:
    out = tmp_path / "loop_cpu.json"
    done = run_benchmark("benchmarks.loop_cpu", ["--rounds", "1", "--seconds", "2", "--settle", "1",
                                                 "--json", str(out)], timeout=150)
    assert done.returncode == 0, done.stdout[-3000:]
    summary = next(iter(json.loads(out.read_text())["summary"].values()))
    assert summary["primary_median"] > 0 and summary["replica_median"] > 0


def test_loop_profile_short_run() -> None:
    done = run_benchmark("benchmarks.loop_profile", ["--seconds", "2", "--top", "3"], timeout=150)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "function calls" in done.stdout, "a cProfile listing"
    assert done.stdout.count("WARNING/ERROR lines in its log while profiled") == 3, "one report per member"
