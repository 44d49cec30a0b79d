"""The systemd unit `raftpg systemd-unit` prints, and sd_notify over $NOTIFY_SOCKET."""

from __future__ import annotations

import configparser
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftpg.cli import sdnotify
from raftpg.cli.main import main
from raftpg.cli.systemd_unit import UnitOptions, render_unit

pytestmark = pytest.mark.unit


def _unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_unit_runs_the_daemon_as_postgres_with_notify_and_reload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["systemd-unit", "--binary", "/opt/raftpg", "-c", "/etc/raftpg/a.yml", "--ttl", "30"]) == 0
    service = _unit(capsys.readouterr().out)["Service"]
    assert service["Type"] == "notify"
    # The single file's bootloader is the main PID; READY=1 comes from its Python child.
    assert service["NotifyAccess"] == "all"
    assert service["User"] == "postgres"
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"] == "/opt/raftpg run -c /etc/raftpg/a.yml"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # raftpg stops PostgreSQL itself; paused, PostgreSQL outlives a raftpg restart (an upgrade).
    assert service["KillMode"] == "process"
    assert service["RestartForceExitStatus"] == "75"
    # Two full waits of the lease ttl (HA cycle, hand-over) plus the checkpoint margin.
    assert int(service["TimeoutStopSec"]) == 2 * 30 + 60


def test_stop_timeout_never_below_the_daemons_own_minimum() -> None:
    assert UnitOptions(ttl=3).stop_timeout == UnitOptions(ttl=10).stop_timeout == 80
    assert _unit(render_unit(UnitOptions()))["Install"]["WantedBy"] == "multi-user.target"


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path


def test_notify_sends_a_datagram_to_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert sdnotify.notify("READY=1\nSTATUS=up", env={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1\nSTATUS=up"


def test_notify_abstract_socket() -> None:
    name = f"raftpg-test-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert sdnotify.notify("STOPPING=1", env={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"STOPPING=1"


@pytest.mark.parametrize("value", ["", "relative/path", None])
def test_notify_without_a_usable_socket_sends_nothing(value: str | None) -> None:
    env = {} if value is None else {"NOTIFY_SOCKET": value}
    assert sdnotify.notify_address(env) is None
    assert not sdnotify.notify("READY=1", env=env)


def test_notify_to_a_missing_socket_is_a_logged_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert not sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert "cannot notify systemd" in caplog.text


def test_the_single_file_puts_its_own_path_in_the_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/bin/raftpg")
    service = _unit(render_unit(UnitOptions()))["Service"]
    assert service["ExecStart"] == "/opt/bin/raftpg run -c /etc/raftpg/node.yml"
