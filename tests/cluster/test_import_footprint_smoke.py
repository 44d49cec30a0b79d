"""Smoke run of benchmarks/import_footprint.py --quick (fresh interpreters, no cluster): the
daemon's imports are measured and the daemon-only set is a subset of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.bench_run import run_benchmark

pytestmark = [pytest.mark.timeout(120)]


def test_import_footprint_totals(tmp_path: Path) -> None:
    out = tmp_path / "imports.json"
    done = run_benchmark("benchmarks.import_footprint", ["--quick", "--repeat", "1", "--out", str(out)], timeout=100)
    assert done.returncode == 0, done.stdout[-3000:]
    result = json.loads(out.read_text())
    bare, daemon, only = result["bare_interpreter"], result["daemon_imports"], result["daemon_only"]
    assert daemon["rss_mib"] > bare["rss_mib"] and daemon["modules"] > 100
    assert only["modules"] <= daemon["modules"]
    assert only["saving"]["modules"] == daemon["modules"] - only["modules"]
    assert "raftpg.cli.daemon" not in only["unneeded_raftpg_modules"]
