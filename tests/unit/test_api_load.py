"""The REST API load benchmark's smoke run (--quick): it runs, and the attack really was in place.

The latency figures themselves are the benchmark's to report, not this test's to judge.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_answers_every_request_under_attack(tmp_path: Path) -> None:
    output = tmp_path / "api-load.json"
    subprocess.run([sys.executable, "benchmarks/api_load.py", "--quick", "--output", str(output)], cwd=ROOT,
                   check=True, timeout=100, capture_output=True)
    result = json.loads(output.read_text())
    load = result["load"]
    attackers = load["idle_tls_connections"] + load["slowloris_clients"] + load["stalled_tls_handshakes"]
    for phase in ("baseline", "under_attack"):
        for mode in ("keepalive", "new_connection_each"):
            figures = result[phase][mode]
            assert figures["count"] == load["requests_per_mode"], (phase, mode)
            assert figures["errors"] == {}, (phase, mode)
            assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert result[phase]["loop_lag"]["count"] > 0
    # No attacker during the baseline; the last of its new-connection-each requests may still be
    # closing on the server side when the count is read.
    assert result["baseline"]["server_open_connections"]["before"] == 0
    assert result["baseline"]["server_open_connections"]["after"] <= 1
    # Most attackers held a connection when measuring began (some may be between a cut and a reconnect).
    assert result["under_attack"]["server_open_connections"]["before"] >= attackers // 2
    opened = result["attack"]["opened"]
    assert opened["idle"] >= load["idle_tls_connections"]
    assert opened["slowloris"] >= load["slowloris_clients"]
    assert opened["stalled_tls"] >= load["stalled_tls_handshakes"]
