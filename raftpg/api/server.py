"""Serving the API on restapi.listen, over TLS when a certificate is configured.

Connections go through a ConnectionGuard (limits and deadlines, see guard.py); the listening
socket is ours rather than aiohttp's TCPSite, which cannot bound the TLS handshake.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from dataclasses import replace

from aiohttp import web

from raftpg.api.app import ApiOptions, make_app
from raftpg.api.backend import NodeBackend
from raftpg.api.guard import ConnectionGuard, ConnectionLimits
from raftpg.config import Address, RestApiSettings

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 2.0
"""Seconds stop() lets in-flight requests finish; a waiting switchover must not hold up shutdown."""

LINGERING_TIME = 1.0
"""Seconds aiohttp keeps reading a body it answered before receiving in full (aiohttp's default: 10)."""

BACKLOG = 512
"""Pending accepts; a burst of health checks from many load balancers must not overflow it."""

FD_RESERVE = 512
"""Descriptors kept for everything but API connections: PostgreSQL, Raft, logs, peers."""

_VERIFY_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_context(restapi: RestApiSettings) -> ssl.SSLContext | None:
    """Server TLS from certfile/keyfile; client certificates are checked against cafile per verify_client."""
    if restapi.certfile is None:
        return None
    if restapi.keyfile is None:
        raise ValueError("restapi.keyfile is required with restapi.certfile")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(restapi.certfile, restapi.keyfile)
    mode = _VERIFY_MODES[restapi.verify_client]
    if mode != ssl.CERT_NONE:
        if restapi.cafile is None:
            raise ValueError(f"restapi.cafile is required with verify_client: {restapi.verify_client}")
        context.load_verify_locations(cafile=restapi.cafile)
    context.verify_mode = mode
    return context


def fd_capacity(wanted: int) -> int:
    """API connections this process can hold: raises the soft open-file limit up to the hard one if needed.

    Running out of descriptors is worse than refusing: asyncio then stops accepting for a second
    at a time, health checks included.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        logger.info("raised the open-file limit from %d to %d for the REST API", soft, raised)
        soft = raised
    if soft != resource.RLIM_INFINITY and soft < needed:
        room = max(1, soft - FD_RESERVE)
        logger.warning("REST API: the open-file limit (%d) leaves room for %d connections, not %d; "
                       "raise LimitNOFILE / ulimit -n", soft, room, wanted)
        return room
    return wanted


class _GuardedSite(web.BaseSite):
    """A TCP site whose connections pass the guard and whose TLS handshake is bounded."""

    def __init__(self, runner: web.AppRunner, address: Address, context: ssl.SSLContext | None,
                 guard: ConnectionGuard) -> None:
        super().__init__(runner, ssl_context=context, backlog=BACKLOG)
        self._address = address
        self._guard = guard

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._address}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        timeout = None if self._ssl_context is None else self._guard.limits.handshake_timeout
        self._server = await loop.create_server(self._guard, self._address.host, self._address.port,
                                                ssl=self._ssl_context, backlog=self._backlog, reuse_address=True,
                                                ssl_handshake_timeout=timeout, ssl_shutdown_timeout=timeout)


class ApiServer:
    def __init__(self, runner: web.AppRunner, guard: ConnectionGuard) -> None:
        self._runner = runner
        self.guard = guard

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) actually bound; useful when the configured port was 0."""
        return [(str(addr[0]), int(addr[1])) for addr in self._runner.addresses]

    async def stop(self) -> None:
        await self._runner.cleanup()
        self.guard.close_all()
        logger.info("REST API stopped")


def _protocol(runner: web.AppRunner) -> asyncio.Protocol:
    """aiohttp's protocol for one connection (the runner's server exists once it is set up)."""
    assert runner.server is not None
    return runner.server()


async def start_api(backend: NodeBackend, options: ApiOptions | None = None,
                    limits: ConnectionLimits | None = None) -> ApiServer:
    restapi = backend.settings.restapi
    context = tls_context(restapi)
    limits = limits or ConnectionLimits()
    capacity = fd_capacity(limits.max_connections)
    if capacity < limits.max_connections:
        limits = replace(limits, max_connections=capacity)
    guard = ConnectionGuard(lambda: _protocol(runner), limits, tls=context is not None)
    app = make_app(backend, options, outer=(guard.middleware,))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT,
                           keepalive_timeout=limits.idle_timeout, lingering_time=LINGERING_TIME)
    await runner.setup()
    site = _GuardedSite(runner, restapi.listen, context, guard)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = ApiServer(runner, guard)
    logger.info("REST API listening on %s (%s, authentication %s, at most %d connections)", server.addresses,
                "https" if context else "http", "on" if restapi.authentication else "off",
                limits.max_connections)
    return server
