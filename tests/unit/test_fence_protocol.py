"""The fence's wire protocol and pid file: what the daemon writes, the fence must read back."""

import sys
from pathlib import Path

import pytest

from raftpg.fence import client, process, protocol
from raftpg.fence.protocol import Deadline, Disarm

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("message", [Deadline(12345.678901234), Deadline(0.1), Disarm()])
def test_every_message_reads_back_as_written(message: protocol.Message) -> None:
    line = protocol.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert len(line) < 512, "must stay below PIPE_BUF so each write is atomic"
    assert protocol.parse(line.decode()) == message


@pytest.mark.parametrize("line", ["", "deadline", "deadline x", "deadline nan", "deadline inf", "disarm now", "arm 3"])
def test_lines_the_fence_does_not_understand(line: str) -> None:
    assert protocol.parse(line) is None


def test_the_pid_file_the_fence_writes_is_what_the_client_reads(tmp_path: Path) -> None:
    assert client.read_record(tmp_path) is None
    (tmp_path / protocol.PID_NAME).write_text(protocol.record_text(41, 7))
    assert client.read_record(tmp_path) == client.FenceRecord(pid=41, postmaster_pid=7)
    (tmp_path / protocol.PID_NAME).write_text("{not json")
    assert client.read_record(tmp_path) is None


def test_the_fence_removes_its_pid_file_but_not_a_successors(tmp_path: Path) -> None:
    pid_file = tmp_path / protocol.PID_NAME
    pid_file.write_text(protocol.record_text(42, 7))
    process._remove_if_ours(str(pid_file), protocol.record_text(41, 7))
    assert client.read_record(tmp_path) == client.FenceRecord(42, 7)
    process._remove_if_ours(str(pid_file), protocol.record_text(42, 7))
    assert not pid_file.exists()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--run-dir", "/r", "--postmaster-pid", "7"],
        ["--run-dir", "/r", "--postmaster-pid", "7", "--deadline"],
        ["--run-dir", "/r", "--postmaster-pid", "x", "--deadline", "1.5"],
        ["--run-dir", "/r", "--postmaster-pid", "7", "--deadline", "1.5", "--verbose", "1"],
        ["--run-dir", "/r", "--run-dir", "/s", "--postmaster-pid", "7", "--deadline", "1.5"],
    ],
)
def test_the_fence_refuses_a_command_line_it_does_not_understand(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        process._Args(argv)


def test_the_fence_command_line() -> None:
    args = process._Args(["--deadline", "1.5", "--run-dir", "/r", "--postmaster-pid", "7", "--data-dir", "/d"])
    assert (args.run_dir, args.postmaster_pid, args.deadline, args.data_dir) == ("/r", 7, 1.5, "/d")
    assert process._Args(["--run-dir", "/r", "--postmaster-pid", "7", "--deadline", "1"]).data_dir is None


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["python3", "-S", "-c", protocol.START_CODE, "--run-dir", "/r"], True),
        (["python3", "-m", "raftpg.fence.process", "--run-dir", "/r"], True),
        (["python3", "-S", "-c", protocol.START_CODE, "--run-dir", "/other"], False),
        (["/usr/bin/raftpg", "fence", "--run-dir", "/r"], True),
        (["python3", "-m", "raftpg.postgres.fence", "--run-dir", "/r"], True),
        (["python3", "-m", "raftpg.fence.process", "--run-dir", "/other"], False),
        (["/usr/bin/raftpg", "daemon", "--run-dir", "/r"], False),
        ([], False),
    ],
)
def test_a_fence_is_recognised_by_its_command_line_and_run_dir(cmdline: list[str], expected: bool) -> None:
    assert protocol.is_fence_cmdline(cmdline, "/r") is expected


def test_fence_command_in_the_single_file_build_and_from_source(monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.fence_command()[1:] == ["-S", "-c", protocol.START_CODE]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert client.fence_command()[1:] == ["fence"]

