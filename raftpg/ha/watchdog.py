"""The Linux watchdog: the host resets itself if the lease holder stops proving it is alive.

The fence (DESIGN rule 2) covers a dead or frozen raftpg process; it cannot cover a frozen host
or a fence process that is itself starved. A watchdog device can: once armed, the kernel (or the
hardware) resets the machine unless it is pinged within its timeout. The holder arms it before
PostgreSQL runs as primary, pings it after every committed renewal, and disarms it on demotion,
pause and clean shutdown. The timeout is `ttl - safety_margin` (whole seconds, rounded down), so
a holder that stops renewing is reset before its lease can expire and another member promotes.

Modes, as in Patroni: ``off`` never touches the device; ``automatic`` uses it when it can and
otherwise logs a warning and carries on; ``required`` raises WatchdogError when it cannot arm
(or ping) it, and the HA loop must then refuse to hold the lease.

When the configured device is a FIFO or a regular file the watchdog runs in *fake* mode, for
tests: instead of ioctls it writes one text line per event (see FakeWatchdogDevice in
tests/unit/watchdog_fake.py, which reads them)::

    arm <timeout>   armed, or the timeout changed (counts as a ping, as WDIOC_SETTIMEOUT does)
    ping            keepalive
    disarm          magic close: the timer stops

The ioctl numbers use the generic Linux encoding (x86, x86-64, ARM, arm64, RISC-V); PowerPC,
MIPS, SPARC and Alpha encode directions differently and are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import math
import os
import stat
import struct
from pathlib import Path

from raftpg.config import WatchdogSettings

logger = logging.getLogger(__name__)

_IOC_WRITE = 1
_IOC_READ = 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = 8
_IOC_SIZESHIFT = 16
_IOC_DIRSHIFT = 30
_INT = "i"


def _ioc(direction: int, kind: str, number: int, size: int) -> int:
    return (
        (direction << _IOC_DIRSHIFT)
        | (size << _IOC_SIZESHIFT)
        | (ord(kind) << _IOC_TYPESHIFT)
        | (number << _IOC_NRSHIFT)
    )


def _ior(kind: str, number: int, fmt: str) -> int:
    return _ioc(_IOC_READ, kind, number, struct.calcsize(fmt))


def _iowr(kind: str, number: int, fmt: str) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, kind, number, struct.calcsize(fmt))


WDIOC_KEEPALIVE = _ior("W", 5, _INT)
WDIOC_SETTIMEOUT = _iowr("W", 6, _INT)
WDIOC_GETTIMEOUT = _ior("W", 7, _INT)

MODES = ("off", "automatic", "required")
_FLOOR_EPSILON = 1e-9  # 3.3 - 0.3 is 2.9999999999999996 in floating point; that is still 3 s


class WatchdogError(Exception):
    """The watchdog is required but could not be armed or pinged."""


def watchdog_timeout(ttl: float, safety_margin: float, loop_wait: float | None = None) -> int:
    """The device timeout for a lease of `ttl`: whole seconds of `ttl - safety_margin`, rounded down.

    Rounding down makes the host reset earlier, never later than the margin promises. With
    `loop_wait`, a timeout that a healthy loop renewing every `loop_wait` seconds could overrun
    is refused (ValueError), because it would reset a healthy primary.
    """
    if safety_margin < 0:
        raise ValueError(f"watchdog.safety_margin must be at least 0, got {safety_margin:g}")
    if safety_margin >= ttl:
        raise ValueError(f"watchdog.safety_margin ({safety_margin:g}) must be less than ttl ({ttl:g})")
    timeout = _whole_seconds(ttl - safety_margin)
    if loop_wait is not None and timeout <= loop_wait:
        raise ValueError(
            f"watchdog timeout {timeout} s (ttl {ttl:g} - safety_margin {safety_margin:g}, rounded down) "
            f"must be longer than loop_wait ({loop_wait:g}): the watchdog would reset a healthy primary "
            "between two renewals; lower safety_margin or loop_wait, or raise ttl"
        )
    return timeout


def _whole_seconds(timeout: float) -> int:
    return max(1, math.floor(timeout + _FLOOR_EPSILON))


class Watchdog:
    """One watchdog device, armed while this node holds the lease as primary.

    Only the event loop's thread mutates the state; the few blocking calls (open, ioctl,
    close) run in a worker thread. A keepalive is a single non-blocking write.
    """

    def __init__(self, settings: WatchdogSettings, ttl: float) -> None:
        if settings.mode not in MODES:
            raise ValueError(f"watchdog.mode must be one of {', '.join(MODES)}, got {settings.mode!r}")
        self.settings = settings
        self.ttl = ttl
        self._fd: int | None = None
        self._fake = False
        self._timeout: int | None = None

    @property
    def armed(self) -> bool:
        return self._fd is not None

    @property
    def is_required(self) -> bool:
        return self.settings.mode == "required"

    @property
    def timeout(self) -> int | None:
        """The timeout the device runs with, in seconds; None while disarmed."""
        return self._timeout

    @property
    def default_timeout(self) -> int:
        return watchdog_timeout(self.ttl, self.settings.safety_margin)

    async def arm(self, timeout: float | None = None) -> bool:
        """Open the device and set its timeout (default `ttl - safety_margin`); True when armed.

        Arming an armed watchdog changes its timeout if needed and pings it. Failing raises
        WatchdogError in required mode and returns False (with a warning) in automatic mode.
        """
        if self.settings.mode == "off":
            return False
        seconds = _whole_seconds(self.default_timeout if timeout is None else timeout)
        device = self.settings.device
        if self._fd is not None:
            if seconds == self._timeout:
                return self.keepalive()
            try:
                self._timeout = await asyncio.to_thread(_set_timeout, self._fd, seconds, self._fake)
            except (OSError, WatchdogError) as exc:
                return self._failed(f"could not change the watchdog timeout of {device} to {seconds} s: {exc}")
            logger.info("watchdog %s timeout changed to %s s", device, self._timeout)
            return True
        try:
            fd, fake, actual = await asyncio.to_thread(_open_and_set, device, seconds)
        except (OSError, WatchdogError) as exc:
            return self._failed(f"could not arm the watchdog {device}: {exc}")
        self._fd, self._fake, self._timeout = fd, fake, actual
        logger.info("watchdog %s%s armed with a %s s timeout (ttl %g, safety_margin %g)",
                    device, " (fake)" if fake else "", actual, self.ttl, self.settings.safety_margin)
        return True

    def keepalive(self) -> bool:
        """Ping the armed device; True when the ping was delivered, False when disarmed.

        Call it right after each committed renewal: the host is reset `timeout` seconds after
        the last ping, which is before the lease deadline only if the ping follows the renewal's
        send time by less than safety_margin.
        """
        if self._fd is None:
            return False
        try:
            os.write(self._fd, b"ping\n" if self._fake else b"\0")
        except OSError as exc:
            return self._failed(f"watchdog {self.settings.device} keepalive failed: {exc}")
        return True

    async def disarm(self) -> None:
        """Magic close: write 'V' and close, so the kernel stops the timer (pause, demotion, shutdown).

        A kernel built or loaded with nowayout ignores the magic close and resets the host later.
        """
        fd, fake = self._fd, self._fake
        if fd is None:
            return
        self._fd = None
        self._timeout = None
        try:
            await asyncio.to_thread(_magic_close, fd, fake)
        except OSError as exc:
            logger.error("watchdog %s magic close failed (%s): the timer keeps running and will reset the host",
                         self.settings.device, exc)
            return
        logger.info("watchdog %s disarmed", self.settings.device)

    def _failed(self, message: str) -> bool:
        if self.is_required:
            raise WatchdogError(f"{message} (watchdog.mode is required)")
        logger.warning("%s; carrying on without it (watchdog.mode is automatic)", message)
        return False


def _is_fake(device: Path) -> bool:
    try:
        mode = os.stat(device).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _open_and_set(device: Path, seconds: int) -> tuple[int, bool, int]:
    """Open `device` and set its timeout; returns (fd, fake, timeout in effect)."""
    fake = _is_fake(device)
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_APPEND if fake else 0)
    try:
        fd = os.open(device, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO and fake:
            raise WatchdogError(f"nobody reads the fake watchdog FIFO {device}") from exc
        raise
    try:
        return fd, fake, _set_timeout(fd, seconds, fake)
    except BaseException:
        with contextlib.suppress(OSError):
            _magic_close(fd, fake)
        raise


def _set_timeout(fd: int, seconds: int, fake: bool) -> int:
    """Set the device timeout (which also pings it); returns the timeout in effect.

    A device that cannot set timeouts is accepted when its fixed timeout is no longer than
    asked for: a longer one would reset the host after the lease expired.
    """
    if fake:
        os.write(fd, f"arm {seconds}\n".encode())
        return seconds
    buffer = bytearray(struct.pack(_INT, seconds))
    try:
        fcntl.ioctl(fd, WDIOC_SETTIMEOUT, buffer, True)
        actual = int(struct.unpack(_INT, buffer)[0])
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        actual = _get_timeout(fd, exc)
        logger.warning("watchdog cannot set a %s s timeout (%s); it keeps its own %s s", seconds, exc, actual)
        os.write(fd, b"\0")
    if actual > seconds:
        raise WatchdogError(f"the device's timeout is {actual} s, longer than the {seconds} s the lease allows")
    return actual


def _get_timeout(fd: int, set_error: OSError) -> int:
    buffer = bytearray(struct.pack(_INT, 0))
    try:
        fcntl.ioctl(fd, WDIOC_GETTIMEOUT, buffer, True)
    except OSError as exc:
        raise WatchdogError(f"not a watchdog device: WDIOC_SETTIMEOUT failed ({set_error}) "
                            f"and WDIOC_GETTIMEOUT failed ({exc})") from exc
    return int(struct.unpack(_INT, buffer)[0])


def _magic_close(fd: int, fake: bool) -> None:
    try:
        os.write(fd, b"disarm\n" if fake else b"V")
    finally:
        os.close(fd)
