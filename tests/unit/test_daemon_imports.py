"""`raftpg run` carries none of the operator tools' modules for the daemon's whole life."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import sys
from raftpg.cli.main import DAEMON_COMMANDS, build_parser
parser = build_parser(tools=False)
assert parser.parse_args(["run", "-c", "node.yml"]).command == "run"
import raftpg.cli.daemon, raftpg.cli.witness
tools = ("rich", "raftpg.cli.ctl", "raftpg.cli.demo", "raftpg.cli.certs_cmd", "raftpg.devcluster")
print(" ".join(sorted(m for m in sys.modules if m.startswith(tools))))
"""


def test_the_daemon_does_not_import_the_operator_tools() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == [], done.stdout


def test_the_full_parser_still_offers_every_command() -> None:
    from raftpg.cli.main import build_parser

    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"run", "rejoin", "config", "version", "ctl", "demo", "certs", "systemd-unit"} <= set(choices)
