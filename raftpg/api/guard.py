"""Connection admission and deadlines for the REST API, so no client can starve the event loop.

The API shares its event loop with the HA loop's lease renewals, and load balancers depend on
its answers. A client may not hold a connection without doing its part: a request head must
arrive within `head_timeout` of the connection opening (or of its first byte after an idle
period), an idle keep-alive connection is closed after `idle_timeout`, and past
`max_connections` new connections get an immediate 503 and are closed. These deadlines are
our own, on the asyncio protocol, so they hold whatever aiohttp version does or does not
enforce; the TLS handshake timeout is asyncio's (see server.py), the body's the handler's.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

logger = logging.getLogger(__name__)

LOG_INTERVAL = 10.0
"""Seconds between two log lines about refused or cut connections (an attack must not flood the log)."""

REFUSAL_LINGER = 1.0
"""Seconds a refused connection stays open for the client to read the 503 (see _Refused)."""

REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
           b'Content-Length: 38\r\n\r\n{"error": "too many open connections"}')


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 2000
    """Open connections (TLS ones from accept, handshake included) before new ones are refused."""
    handshake_timeout: float = 5.0
    """TLS handshake; on a LAN it takes milliseconds."""
    head_timeout: float = 5.0
    """Request line and headers, from the connection's start or the first byte after an idle period."""
    idle_timeout: float = 30.0
    """Keep-alive connection without a request; above clients' pool timeouts (aiohttp: 15 s)."""

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        for name in ("handshake_timeout", "head_timeout", "idle_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


class _Phase(enum.Enum):
    HEAD = "head"  # waiting for (the rest of) a request head
    BUSY = "busy"  # a handler runs; its own timeouts apply
    IDLE = "idle"  # between requests of a keep-alive connection


class _RateLimitedLog:
    """One line per LOG_INTERVAL at most, counting the events it did not log."""

    def __init__(self, level: int) -> None:
        self._level = level
        self._next = 0.0
        self._pending = 0

    def event(self, now: float, message: str, *args: Any) -> None:
        self._pending += 1
        if now < self._next:
            return
        suffix = f" ({self._pending} times since the last message)" if self._pending > 1 else ""
        logger.log(self._level, message + suffix, *args)
        self._pending = 0
        self._next = now + LOG_INTERVAL


class _GuardedConnection(asyncio.Protocol):
    """Sits between the transport and aiohttp's protocol, forwarding everything, arming deadlines."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._phase = _Phase.HEAD

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._guard.opened(self, transport)
        self._arm(_Phase.HEAD)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._phase is _Phase.IDLE:
            self._arm(_Phase.HEAD)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._guard.closed(self._transport)
            self._transport = None
        self._inner.connection_lost(exc)

    def busy(self) -> None:
        self._phase = _Phase.BUSY
        self._cancel_timer()

    def idle(self) -> None:
        self._arm(_Phase.IDLE)

    def _arm(self, phase: _Phase) -> None:
        self._cancel_timer()
        self._phase = phase
        if self._transport is None:
            return
        limits = self._guard.limits
        delay = limits.head_timeout if phase is _Phase.HEAD else limits.idle_timeout
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._transport is None or self._phase is _Phase.BUSY:
            return
        self._guard.expired(self._phase is _Phase.HEAD, self._transport.get_extra_info("peername"))
        self._transport.abort()


class _Refused(asyncio.Protocol):
    """Answers 503 at once without waiting for the request, then closes.

    It reads (and drops) what the client sends for a moment before closing: closing a socket
    with unread data makes the kernel reset the connection, and the client may lose the 503.
    """

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(REFUSAL)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class ConnectionGuard:
    """The protocol factory given to loop.create_server, wrapping aiohttp's, plus a middleware.

    A TLS connection counts from accept: asyncio calls the factory before the handshake, and
    tells the protocol nothing if the handshake fails, so such a connection counts until
    its handshake timeout has surely passed.
    """

    def __init__(self, inner: Callable[[], asyncio.Protocol], limits: ConnectionLimits, *, tls: bool) -> None:
        self.limits = limits
        self._inner = inner
        self._tls = tls
        self._open: dict[asyncio.Transport, _GuardedConnection] = {}
        self._handshaking: dict[_GuardedConnection, float] = {}
        self._refusals = _RateLimitedLog(logging.WARNING)
        self._slow = _RateLimitedLog(logging.WARNING)
        self.refused = 0
        """Connections refused over the limit since start (for tests and benchmarks)."""
        self.cut_slow = 0
        """Connections closed for a request head that did not arrive in time."""
        self.cut_idle = 0
        """Keep-alive connections closed after idle_timeout without a request."""

    @property
    def open_connections(self) -> int:
        self._forget_stale_handshakes()
        return len(self._open) + len(self._handshaking)

    def __call__(self) -> asyncio.Protocol:
        count = self.open_connections
        if count >= self.limits.max_connections:
            self.refused += 1
            self._refusals.event(self._now(), "REST API: %d connections open (limit %d): refusing new ones",
                                 count, self.limits.max_connections)
            return _Refused()
        connection = _GuardedConnection(self, self._inner())
        if self._tls:
            self._handshaking[connection] = self._now()
        return connection

    def opened(self, connection: _GuardedConnection, transport: asyncio.Transport) -> None:
        self._handshaking.pop(connection, None)
        self._open[transport] = connection

    def closed(self, transport: asyncio.Transport) -> None:
        self._open.pop(transport, None)

    def expired(self, slow: bool, peer: object) -> None:
        if not slow:
            self.cut_idle += 1
            logger.debug("REST API: closed a keep-alive connection from %s idle for %gs", peer,
                         self.limits.idle_timeout)
            return
        self.cut_slow += 1
        self._slow.event(self._now(), "REST API: closed a connection from %s that sent no complete request "
                                      "head within %gs", peer, self.limits.head_timeout)

    def close_all(self) -> None:
        """Abort every connection still open (at shutdown, after aiohttp's graceful part)."""
        for transport in list(self._open):
            transport.abort()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """No deadline while a handler runs (it has its own); the idle one starts when it returns."""
        connection = self._open.get(request.transport) if request.transport is not None else None
        if connection is None:
            return await handler(request)
        connection.busy()
        try:
            return await handler(request)
        finally:
            connection.idle()

    def _forget_stale_handshakes(self) -> None:
        horizon = self._now() - self.limits.handshake_timeout - 1.0
        while self._handshaking:
            oldest, started = next(iter(self._handshaking.items()))
            if started > horizon:
                return
            del self._handshaking[oldest]

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
