"""The fence process against a real (stand-in) postmaster: a `sleep` in its own session.

No PostgreSQL here (tests/cluster/test_postgres_instance.py has that); this checks the fence
and its client end to end in about a second, and that the fence imports nothing heavy.
"""

import ast
import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from raftpg.clock import boottime
from raftpg.fence import client, protocol
from raftpg.fence.client import FenceClient
from raftpg.poll import wait_until
from raftpg.procfs import process_alive

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def postmaster() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(5)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    assert wait_until(condition, timeout, 0.02), f"timed out waiting for {what}"


def _postmaster_gone(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


def test_unfed_fence_stops_its_process_once_the_deadline_passes(
    tmp_path: Path, postmaster: subprocess.Popen[bytes]
) -> None:
    fence = FenceClient(tmp_path)
    deadline = boottime() + 0.6
    fence_pid = asyncio.run(fence.arm(postmaster.pid, deadline))
    assert fence.is_armed() and fence.guarded_pid() == postmaster.pid
    assert postmaster.poll() is None, "stopped before the deadline"
    _wait_for(lambda: _postmaster_gone(postmaster), 5, "the guarded process to be stopped")
    assert boottime() >= deadline
    _wait_for(lambda: not process_alive(fence_pid), 5, "the fence to exit")
    assert "lease deadline passed" in (tmp_path / "fence.log").read_text()


def test_fed_fence_is_reused_and_disarms_without_touching_its_process(
    tmp_path: Path, postmaster: subprocess.Popen[bytes]
) -> None:
    first = FenceClient(tmp_path)
    fence_pid = asyncio.run(first.arm(postmaster.pid, boottime() + 0.5))
    end = time.monotonic() + 1.5
    while time.monotonic() < end:  # fed past three unfed deadlines
        assert first.feed(boottime() + 0.5)
        time.sleep(0.1)
    assert postmaster.poll() is None
    successor = FenceClient(tmp_path)  # a restarted daemon finds the same fence
    assert asyncio.run(successor.arm(postmaster.pid, boottime() + 5)) == fence_pid
    asyncio.run(successor.disarm())
    assert not process_alive(fence_pid) and not successor.is_armed()
    assert postmaster.poll() is None, "a disarmed fence must leave PostgreSQL alone"


def test_the_fence_process_imports_only_small_standard_modules_its_package_and_procfs() -> None:
    """The fence's RSS budget (README "Footprint"): started as the daemon starts it, its
    interpreter holds no enum (signal), contextlib/collections (runpy, suppress) or anything
    heavier, and of raftpg only the fence package and procfs."""
    probe = protocol.START_CODE.replace("sys.exit(main(sys.argv[1:]))", "print(sorted(sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", probe], env=client._fence_environment(),
                         capture_output=True, text=True, timeout=30, check=True)
    loaded = set(ast.literal_eval(out.stdout))
    assert sorted(m for m in loaded if m.split(".")[0] in ("raftpg", "asyncio", "psycopg")) == [
        "raftpg",
        "raftpg.fence",
        "raftpg.fence.kill",
        "raftpg.fence.process",
        "raftpg.fence.protocol",
        "raftpg.fence.signals",
        "raftpg.procfs",
    ]
    assert loaded.isdisjoint({"enum", "signal", "contextlib", "collections", "runpy", "typing", "dataclasses",
                              "pathlib", "json", "logging"})
