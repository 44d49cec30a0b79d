"""How raftpg starts another raftpg process (a demo node, `rejoin`): from the same single file
when frozen (`make dist`: sys.executable *is* raftpg), else as a module of this interpreter."""

from __future__ import annotations

import sys


def raftpg_command() -> list[str]:
    """argv prefix for `raftpg ...`; append the subcommand and its arguments."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "raftpg.cli.main"]
