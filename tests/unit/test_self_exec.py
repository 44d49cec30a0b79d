"""raftpg starts helper raftpg processes from the single file when frozen, as a module otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from raftpg.cli.main import build_parser, main
from raftpg.cli.self_exec import independent_environment, raftpg_command

pytestmark = pytest.mark.unit


def test_from_a_checkout_or_venv_it_is_this_interpreter_running_the_module() -> None:
    argv = [*raftpg_command(), "version"]
    assert argv[:3] == [sys.executable, "-m", "raftpg.cli.main"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.startswith("raftpg ")


def test_frozen_it_is_the_executable_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/usr/local/bin/raftpg")
    assert raftpg_command() == ["/usr/local/bin/raftpg"]


def test_hidden_fence_subcommand_runs_the_fence_program(capsys: pytest.CaptureFixture[str]) -> None:
    # Without its arguments the fence program (not raftpg's parser) answers with its usage.
    assert main(["fence"]) == 2
    assert "--postmaster-pid" in capsys.readouterr().err
    assert "fence" not in build_parser().format_help()


def test_a_frozen_child_for_another_user_unpacks_its_own_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert independent_environment({"A": "1"}) == {"A": "1"}
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert independent_environment({"A": "1"}) == {"A": "1", "PYINSTALLER_RESET_ENVIRONMENT": "1"}
