"""The single-file build checks that the cluster's OS user can run it by running it (it has no `-c`)."""

from __future__ import annotations

import sys

import pytest

from raftpg.devcluster.run_as import probe_command

pytestmark = pytest.mark.unit


def test_the_probe_imports_raftpg_from_a_checkout_and_runs_the_single_file_when_frozen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert probe_command() == [sys.executable, "-c", "import raftpg.cli.main"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/usr/local/bin/raftpg")
    assert probe_command() == ["/usr/local/bin/raftpg", "version"]
