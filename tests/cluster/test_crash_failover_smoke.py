"""Smoke run of benchmarks/crash_failover.py: one kill -9 of the primary's node at ttl 3 (quorum
mode); another member takes over, no acknowledged write is lost, the figures are consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.bench_run import run_benchmark

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]


def test_crash_failover_one_round(tmp_path: Path) -> None:
    out = tmp_path / "crash.json"
    done = run_benchmark("benchmarks.crash_failover", ["--ttl", "3", "--rounds", "1", "--out", str(out)],
                         timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    result = json.loads(out.read_text())
    (round_,) = result["rounds"]
    assert round_["new_primary"] != round_["old_primary"]
    assert round_["first_write_s"] > 0 and round_["primary_answers_s"] > 0
    assert round_["acknowledged"] > 0 and result["lost"] == 0
