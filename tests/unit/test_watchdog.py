"""The watchdog: ioctl numbers, the timeout rule, the modes, and the fake device protocol.

No real watchdog is ever opened here (arming /dev/watchdog would reset this machine): the
"device" is a FIFO read by FakeWatchdogDevice, a regular file, /dev/null (a character device
that is not a watchdog), or a path that does not exist.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from raftpg.config import WatchdogSettings
from raftpg.ha.watchdog import (
    WDIOC_GETTIMEOUT,
    WDIOC_KEEPALIVE,
    WDIOC_SETTIMEOUT,
    Watchdog,
    WatchdogError,
    watchdog_timeout,
)
from tests.unit.watchdog_fake import FakeEvent, FakeWatchdogDevice, armed_gaps, would_have_fired

pytestmark = [pytest.mark.unit, pytest.mark.timeout(20)]

WAIT = 5.0


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeWatchdogDevice]:
    with FakeWatchdogDevice(tmp_path / "watchdog") as device:
        yield device


def make(mode: str, device: Path, ttl: float = 10.0, safety_margin: float = 5.0) -> Watchdog:
    return Watchdog(WatchdogSettings(mode=mode, device=device, safety_margin=safety_margin), ttl)


def kinds(device: FakeWatchdogDevice) -> list[str]:
    return [event.kind for event in device.events]


def state(watchdog: Watchdog) -> tuple[bool, int | None]:
    return watchdog.armed, watchdog.timeout


def has(count: int) -> Callable[[tuple[FakeEvent, ...]], bool]:
    return lambda events: len(events) >= count


# --------------------------------------------------------------------------- constants and timeout


def test_ioctl_numbers_are_the_linux_ones() -> None:
    assert WDIOC_KEEPALIVE == 0x80045705
    assert WDIOC_SETTIMEOUT == 0xC0045706
    assert WDIOC_GETTIMEOUT == 0x80045707


@pytest.mark.parametrize(
    ("ttl", "margin", "expected"),
    [(10, 5, 5), (30, 5, 25), (10, 2.5, 7), (3.3, 0.3, 3), (3, 2.5, 1), (10, 0, 10), (5, 4.99, 1)],
)
def test_watchdog_timeout_rounds_down_to_whole_seconds(ttl: float, margin: float, expected: int) -> None:
    assert watchdog_timeout(ttl, margin) == expected


def test_watchdog_timeout_must_outlast_loop_wait() -> None:
    assert watchdog_timeout(10, 5, loop_wait=2) == 5
    with pytest.raises(ValueError, match=r"watchdog timeout 2 s .* must be longer than loop_wait \(2\)"):
        watchdog_timeout(5, 2.5, loop_wait=2)


@pytest.mark.parametrize(("ttl", "margin", "message"), [
    (5, 5, r"safety_margin \(5\) must be less than ttl \(5\)"),
    (5, 7, r"safety_margin \(7\) must be less than ttl \(5\)"),
    (5, -1, "must be at least 0"),
])
def test_watchdog_timeout_rejects_a_margin_that_leaves_nothing(ttl: float, margin: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        watchdog_timeout(ttl, margin)


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be one of off, automatic, required"):
        make("sometimes", tmp_path / "watchdog")


# --------------------------------------------------------------------------- fake device protocol


async def test_arm_ping_disarm_through_the_fake_device(fake: FakeWatchdogDevice) -> None:
    watchdog = make("required", fake.path, ttl=10, safety_margin=5)
    assert state(watchdog) == (False, None)

    assert await watchdog.arm() is True
    assert state(watchdog) == (True, 5)
    assert fake.wait_for(has(1), WAIT)
    assert fake.events[0].kind == "arm" and fake.events[0].timeout == 5
    assert (fake.armed, fake.timeout) == (True, 5)

    assert watchdog.keepalive() is True
    assert watchdog.keepalive() is True
    assert fake.wait_for(has(3), WAIT)
    assert len(fake.pings) == 2
    assert fake.pings[0] <= fake.pings[1] <= time.monotonic()

    await watchdog.disarm()
    assert state(watchdog) == (False, None)
    assert fake.wait_for(has(4), WAIT)
    assert kinds(fake) == ["arm", "ping", "ping", "disarm"]
    assert (fake.armed, fake.timeout) == (False, None)
    assert not fake.would_have_fired()
    assert watchdog.keepalive() is False  # disarmed: nothing is written
    await watchdog.disarm()  # a second disarm is a no-op
    assert kinds(fake) == ["arm", "ping", "ping", "disarm"]


async def test_a_missing_ping_is_detected(fake: FakeWatchdogDevice) -> None:
    watchdog = make("required", fake.path)
    assert await watchdog.arm(1)
    assert watchdog.keepalive()
    assert fake.wait_for(has(2), WAIT)
    assert not fake.would_have_fired(timeout=0.5, until=fake.events[-1].at + 0.4)
    last_ping = fake.pings[-1]
    await asyncio.sleep(0.15)  # the gap under test: no ping for 150 ms while armed
    assert fake.would_have_fired(timeout=0.1)
    assert fake.longest_gap() >= 0.15
    assert not fake.would_have_fired()  # the armed 1 s timeout has not passed yet...
    assert fake.would_have_fired(until=last_ping + 1.01)  # ...and would be passed at this instant
    await watchdog.disarm()


async def test_a_process_killed_while_armed_leaves_the_device_armed(fake: FakeWatchdogDevice) -> None:
    """Closing without the magic 'V' (what the kernel does for a killed process) keeps the timer."""
    watchdog = make("required", fake.path)
    assert await watchdog.arm(1)
    assert watchdog._fd is not None
    os.close(watchdog._fd)  # the process dies: its descriptors close without a magic close
    assert fake.wait_for(has(1), WAIT)
    assert fake.armed
    assert fake.would_have_fired(until=fake.events[-1].at + 1.5)

    restarted = make("required", fake.path)  # a restarted raftpg re-arms in time
    assert await restarted.arm(1)
    assert fake.wait_for(has(2), WAIT)
    assert [e.timeout for e in fake.events] == [1, 1]
    assert not fake.would_have_fired(until=fake.events[-1].at + 0.5)
    await restarted.disarm()


async def test_rearming_changes_the_timeout_and_counts_as_a_ping(fake: FakeWatchdogDevice) -> None:
    watchdog = make("required", fake.path, ttl=10, safety_margin=5)
    assert await watchdog.arm()
    assert await watchdog.arm(5)  # same timeout: a plain ping
    watchdog.ttl = 8  # the dynamic configuration changed ttl
    assert await watchdog.arm()
    assert watchdog.timeout == 3
    assert fake.wait_for(has(3), WAIT)
    assert [(e.kind, e.timeout) for e in fake.events] == [("arm", 5), ("ping", None), ("arm", 3)]
    assert fake.timeout == 3
    await watchdog.disarm()


async def test_regular_file_device_gets_the_lines_appended(tmp_path: Path) -> None:
    device = tmp_path / "watchdog.log"
    device.write_text("earlier\n")
    watchdog = make("automatic", device, ttl=7, safety_margin=2.5)
    assert await watchdog.arm()
    assert watchdog.keepalive()
    await watchdog.disarm()
    assert device.read_text() == "earlier\narm 4\nping\ndisarm\n"


# --------------------------------------------------------------------------- modes and failures


async def test_required_with_a_missing_device_raises(tmp_path: Path) -> None:
    watchdog = make("required", tmp_path / "no-such-watchdog")
    with pytest.raises(WatchdogError, match=r"could not arm the watchdog .*no-such-watchdog.*required"):
        await watchdog.arm()
    assert not watchdog.armed
    assert not (tmp_path / "no-such-watchdog").exists()


async def test_automatic_with_a_missing_device_carries_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watchdog = make("automatic", tmp_path / "no-such-watchdog")
    assert await watchdog.arm() is False
    assert not watchdog.armed
    assert watchdog.keepalive() is False
    await watchdog.disarm()
    assert "carrying on without it" in caplog.text
    assert not (tmp_path / "no-such-watchdog").exists()


async def test_off_never_opens_the_device(tmp_path: Path, fake: FakeWatchdogDevice) -> None:
    log = tmp_path / "watchdog.log"
    log.write_text("")
    for device in (log, fake.path, tmp_path / "no-such-watchdog"):
        watchdog = make("off", device)
        assert not watchdog.is_required
        assert await watchdog.arm() is False
        assert watchdog.keepalive() is False
        await watchdog.disarm()
        assert not watchdog.armed
    assert log.read_text() == ""
    assert fake.events == ()
    assert not (tmp_path / "no-such-watchdog").exists()


async def test_a_device_that_is_not_a_watchdog_is_refused() -> None:
    """/dev/null opens but answers neither WDIOC_SETTIMEOUT nor WDIOC_GETTIMEOUT."""
    with pytest.raises(WatchdogError, match="not a watchdog device"):
        await make("required", Path("/dev/null")).arm()
    watchdog = make("automatic", Path("/dev/null"))
    assert await watchdog.arm() is False
    assert not watchdog.armed


async def test_a_fake_fifo_nobody_reads_cannot_be_armed(tmp_path: Path) -> None:
    fifo = tmp_path / "watchdog"
    os.mkfifo(fifo)
    with pytest.raises(WatchdogError, match="nobody reads the fake watchdog FIFO"):
        await make("required", fifo).arm()
    assert await make("automatic", fifo).arm() is False


async def test_failed_keepalive_raises_only_when_required(tmp_path: Path) -> None:
    for mode in ("required", "automatic"):
        with FakeWatchdogDevice(tmp_path / f"watchdog-{mode}") as device:
            watchdog = make(mode, device.path)
            assert watchdog.is_required is (mode == "required")
            assert await watchdog.arm()
        # the reader is gone: the next write gets EPIPE
        if mode == "required":
            with pytest.raises(WatchdogError, match="keepalive failed"):
                watchdog.keepalive()
        else:
            assert watchdog.keepalive() is False
        assert watchdog.armed  # the device may still be running: only a magic close stops it
        await watchdog.disarm()  # logs that the magic close failed; never raises
        assert not watchdog.armed


# --------------------------------------------------------------------------- gap analysis (pure)


def ev(at: float, kind: str, timeout: int | None = None) -> FakeEvent:
    return FakeEvent(at, kind, timeout)


def test_gap_analysis_only_counts_armed_intervals() -> None:
    events = [ev(0, "arm", 5), ev(4, "ping"), ev(8, "ping"), ev(9, "disarm"), ev(30, "arm", 2), ev(31, "ping")]
    assert armed_gaps(events, until=32) == [(4, 5), (4, 5), (1, 5), (1, 2), (1, 2)]
    assert not would_have_fired(events, until=32)
    assert would_have_fired(events, until=33.5)  # armed with 2 s since the ping at 31
    assert would_have_fired(events, until=32, timeout=3.5)
    assert not would_have_fired(events[:4], until=1000)  # disarmed: no gap after it counts


def test_gap_analysis_uses_the_timeout_in_effect() -> None:
    events = [ev(0, "arm", 5), ev(4, "arm", 2), ev(7, "ping"), ev(8, "disarm")]
    assert armed_gaps(events, until=100) == [(4, 5), (3, 2), (1, 2)]
    assert would_have_fired(events, until=100)


def test_fake_event_parsing_keeps_unknown_lines() -> None:
    assert FakeEvent.parse("arm 7", 1.0) == FakeEvent(1.0, "arm", 7)
    assert FakeEvent.parse("ping\r", 2.0) == FakeEvent(2.0, "ping")
    assert FakeEvent.parse("arm soon", 3.0) == FakeEvent(3.0, "arm soon")
    assert armed_gaps([ev(0, "arm soon"), ev(1, "ping")], until=5) == []
