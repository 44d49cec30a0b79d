"""Short runs of the Raft-only benchmarks (replicas on loopback, no PostgreSQL) through their own
command lines, so that they cannot rot. The figures belong to the benchmarks; these check that
each run completes and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.bench_run import run_benchmark

pytestmark = [pytest.mark.raft, pytest.mark.timeout(120)]


def _ran(module: str, args: list[str]) -> str:
    done = run_benchmark(module, args, timeout=90)
    assert done.returncode == 0, done.stdout[-3000:]
    return done.stdout


def test_raft_idle_cpu(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    _ran("benchmarks.raft_idle_cpu", ["--seconds", "1", "--rounds", "1", "--renewals", "5", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["leader_tick_cpu_percent"] >= 0 and len(result["follower_tick_cpu_percent"]) == 2
    assert result["renew_ms_leader"]["median"] > 0 and result["renew_ms_follower"]["median"] > 0
    assert len(result["election_s"]) == 1 and result["election_s"][0] > 0


def test_raft_commit_cpu(tmp_path: Path) -> None:
    out = tmp_path / "commit.json"
    _ran("benchmarks.raft_commit_cpu", ["--seconds", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["loaded"]["commits"] > 0
    assert result["leader_ms_per_commit"] > 0 and len(result["follower_ms_per_commit"]) == 2
    assert result["renew_ms"]["median"] > 0


def test_raft_latency() -> None:
    out = _ran("benchmarks.raft_latency", ["--renewals", "5"])
    assert "replicas identical after the run: yes" in out
    assert any(line.startswith("leader ") for line in out.splitlines())
