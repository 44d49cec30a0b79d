"""Serving the API on restapi.listen, over TLS when a certificate is configured."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from raftpg.api.app import ApiOptions, make_app
from raftpg.api.backend import NodeBackend
from raftpg.config import RestApiSettings

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 2.0
"""Seconds stop() lets in-flight requests finish; a waiting switchover must not hold up shutdown."""

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


class ApiServer:
    def __init__(self, runner: web.AppRunner) -> None:
        self._runner = runner

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) actually bound; useful when the configured port was 0."""
        return [(str(addr[0]), int(addr[1])) for addr in self._runner.addresses]

    async def stop(self) -> None:
        await self._runner.cleanup()
        logger.info("REST API stopped")


async def start_api(backend: NodeBackend, options: ApiOptions | None = None) -> ApiServer:
    restapi = backend.settings.restapi
    context = tls_context(restapi)
    runner = web.AppRunner(make_app(backend, options), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, restapi.listen.host, restapi.listen.port, ssl_context=context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = ApiServer(runner)
    logger.info("REST API listening on %s (%s, authentication %s)", server.addresses,
                "https" if context else "http", "on" if restapi.authentication else "off")
    return server
