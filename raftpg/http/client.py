"""One aiohttp client for every call to a REST API, built once from the `restapi` settings.

Members talk to each other with the cluster CA and present their own certificate, so a cluster
with `verify_client: required` works; a peer that fails for a TLS or authentication reason is
remembered (and shown in /patroni) instead of being mistaken for a peer that is down.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp

from raftpg.config import RestApiSettings


def make_ssl_context(cafile: Path | None, certfile: Path | None, keyfile: Path | None,
                     insecure: bool = False) -> ssl.SSLContext:
    """Verify the server with `cafile` (or the system store); present a client cert when given."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if certfile is not None:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile is not None else None)
    return context


def member_ssl_context(restapi: RestApiSettings) -> ssl.SSLContext | None:
    """What a member needs to call another member: the cluster CA and its own certificate."""
    if restapi.certfile is None and restapi.cafile is None:
        return None
    return make_ssl_context(restapi.cafile, restapi.certfile, restapi.keyfile)


class MemberClient:
    """The daemon's client for the other members; one aiohttp session for the process lifetime."""

    def __init__(self, restapi: RestApiSettings) -> None:
        self._ssl = member_ssl_context(restapi)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Created on first use, on the running loop."""
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
