"""Smoke run of benchmarks/soak.py (15 s under pgbench with 2 clients, ttl 5, quorum mode): it runs
end to end and its figures are consistent. A healthy cluster that nobody disturbs must show no
lease change, no demotion, never two primaries, and every acknowledged write at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.bench_run import run_benchmark

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]


def test_soak_smoke(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = run_benchmark("benchmarks.soak", ["--minutes", "0.25", "--clients", "2", "--out", str(out)], timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    result = json.loads(out.read_text())
    assert result["samples"] >= 20
    assert result["primaries_at_once"] == 0
    assert result["lease_changes"] == 0 and result["demotions"] == 0
    assert result["no_primary_samples"] == 0
    assert result["writes"]["acknowledged"] > 0 and result["writes"]["lost"] == 0
    assert result["writes"]["overlapping"] == []
    renewal = result["renewal"]
    assert renewal["renewals"] >= 5, "the holder renews about once per loop_wait"
    assert 0 < renewal["least_time_left_s"] <= result["settings"]["ttl"]
    assert result["pgbench"]["tps_progress"]["n"] >= 1 and result["pgbench"]["early_exits"] == []
