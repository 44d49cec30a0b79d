"""How raftpg starts another raftpg process (a demo node, `rejoin`): from the same single file
when frozen (`make dist`: sys.executable *is* raftpg), else as a module of this interpreter."""

from __future__ import annotations

import sys
from collections.abc import Mapping

EX_TEMPFAIL = 75
"""sysexits.h "try again": the exit code by which `raftpg run` asks its supervisor (systemd's
RestartForceExitStatus, the launcher's Supervisor) to start it again, e.g. from a new binary."""


def raftpg_command() -> list[str]:
    """argv prefix for `raftpg ...`; append the subcommand and its arguments."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "raftpg.cli.main"]


def independent_environment(env: Mapping[str, str]) -> dict[str, str]:
    """Environment for a raftpg process that must not depend on this one (another OS user, or one
    that outlives us). A frozen child otherwise reuses this process's unpacked files, in a
    directory only our user may enter and that is removed when we exit."""
    if getattr(sys, "frozen", False):
        return {**env, "PYINSTALLER_RESET_ENVIRONMENT": "1"}
    return dict(env)
