"""A short run of the chaos benchmark (overlapping faults, quorum mode) through its own command
line, so that the runner and its fault kinds cannot rot: four faults of four kinds in strict quorum
mode, 0 acknowledged writes lost, no overlapping primaries, every fault recovered from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

REPOSITORY = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT = 220.0
# Four of the thirteen kinds keep the run short; the long runs in benchmarks/results/ cover every kind.
KINDS = ("kill_postmaster_then_node", "sigstop_primary_postgres", "kill_during_basebackup", "power_loss")


def test_chaos_smoke_run(tmp_path: Path) -> None:
    result = tmp_path / "chaos.json"
    argv = [sys.executable, "-m", "benchmarks.chaos", "--faults", str(len(KINDS)), "--synchronous-mode", "quorum",
            "--strict", "--ttl", "5", "--seed", "4", "--faults-kinds", ",".join(KINDS), "--recovery-timeout", "60",
            "--json", str(result)]
    log = tmp_path / "chaos.log"
    with log.open("wb") as output:
        process = subprocess.Popen(argv, cwd=REPOSITORY, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
        try:
            code = process.wait(timeout=SMOKE_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # the runner stops its cluster by PID on SIGTERM
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            pytest.fail(f"chaos did not finish within {SMOKE_TIMEOUT}s:\n{log.read_text()[-3000:]}")
    text = log.read_text(errors="replace")
    assert code == 0, f"chaos exited {code}:\n{text[-3000:]}"
    summary = json.loads(result.read_text())
    assert sorted(f["kind"] for f in summary["faults"]) == sorted(KINDS)
    assert summary["writes_acknowledged"] > 0
    assert summary["strict"] is True
    assert summary["writes_lost"] == 0
    assert summary["asynchronous_lost"] == 0
    assert summary["overlaps"] == 0
    assert summary["not_recovered"] is None
