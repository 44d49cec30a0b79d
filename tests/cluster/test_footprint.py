"""Smoke test of benchmarks/footprint.py --quick with 3-second windows: it runs end to end on a
real 3-node cluster, idle and under pgbench, and records every kind of process. The figures
themselves belong to the benchmark, not to a test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "footprint.py"


def test_footprint_quick_measures_raftpg_the_fence_and_postgres(tmp_path: Path) -> None:
    output = tmp_path / "footprint.json"
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--measure", "3", "--output", str(output)],
                   check=True, timeout=360)
    result = json.loads(output.read_text())
    primary = result["primary"]
    for phase in ("idle", "pgbench"):
        nodes = result[phase]
        assert len(nodes) == 3
        for name, kinds in nodes.items():
            assert kinds["raftpg"]["processes"] == 1 and kinds["raftpg"]["rss_mib"] > 0
            assert kinds["postgres"]["processes"] >= 2, "a postmaster and its auxiliary processes"
            assert kinds["fence"]["processes"] == (1 if name == primary else 0), "only the primary is fenced"
    assert "tps" in result["pgbench_tps"]
    mappings = result["primary_raftpg_rss_by_mapping_mib"]
    assert mappings["anonymous"] > 0 and any(name.startswith("libpython") for name in mappings)
