"""Callbacks run real scripts: arguments, timeout, replacement by a newer callback, failures logged."""

from __future__ import annotations

import asyncio
import logging
import stat
import time
from pathlib import Path

import pytest

from raftpg.ha.callbacks import CallbackEvent, CallbackRunner

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_called_with_action_role_and_scope(tmp_path: Path) -> None:
    out = tmp_path / "out"
    record = script(tmp_path, "record.sh", f'echo "$@" >> {out}\n')
    runner = CallbackRunner({CallbackEvent.ON_ROLE_CHANGE: [record]}, "prod", timeout=5)
    runner.fire(CallbackEvent.ON_ROLE_CHANGE, "primary")
    runner.fire(CallbackEvent.ON_START, "replica")  # not configured: nothing runs
    await runner.close()
    assert out.read_text() == "on_role_change primary prod\n"


async def test_fire_returns_at_once_and_a_hung_callback_is_killed(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "started"
    hang = script(tmp_path, "hang.sh", f"touch {marker}\nexec sleep 60\n")
    runner = CallbackRunner({CallbackEvent.ON_STOP: [hang]}, "prod", timeout=0.5)
    started = time.monotonic()
    runner.fire(CallbackEvent.ON_STOP, "primary")
    assert time.monotonic() - started < 0.2  # fire() does not wait for the script
    with caplog.at_level(logging.WARNING):
        await runner.close()
    assert marker.exists()
    assert "did not finish within 0.5s: killed" in caplog.text


async def test_a_newer_callback_replaces_one_still_running(tmp_path: Path) -> None:
    out = tmp_path / "out"
    slow = script(tmp_path, "slow.sh", f'sleep 30; echo "slow $@" >> {out}\n')
    fast = script(tmp_path, "fast.sh", f'echo "fast $@" >> {out}\n')
    runner = CallbackRunner({CallbackEvent.ON_START: [slow], CallbackEvent.ON_ROLE_CHANGE: [fast]}, "s", timeout=40)
    runner.fire(CallbackEvent.ON_START, "replica")
    await asyncio.sleep(0.2)
    runner.fire(CallbackEvent.ON_ROLE_CHANGE, "primary")
    await asyncio.wait_for(runner.close(), 10)
    assert out.read_text() == "fast on_role_change primary s\n"


async def test_failure_is_logged_with_its_output(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    failing = script(tmp_path, "fail.sh", "echo 'cannot reach the VIP manager' >&2\nexit 3\n")
    runner = CallbackRunner({CallbackEvent.ON_RELOAD: [failing]}, "prod", timeout=5)
    with caplog.at_level(logging.WARNING):
        runner.fire(CallbackEvent.ON_RELOAD, "replica")
        await runner.close()
    assert "exited with 3: cannot reach the VIP manager" in caplog.text


async def test_missing_program_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runner = CallbackRunner({CallbackEvent.ON_START: [str(tmp_path / "absent")]}, "prod", timeout=5)
    with caplog.at_level(logging.WARNING):
        runner.fire(CallbackEvent.ON_START, "replica")
        await runner.close()
    assert "could not start" in caplog.text
