"""One HTTP client for every call to a REST API: members, `raftpg ctl`, the launcher, benchmarks.

TLS is set up in one place (TlsFiles): the cluster CA to verify the server, our own certificate
as client certificate, so a cluster with `verify_client: required` works everywhere. Every
request has a timeout, and a failure says *why* there was no answer (FailureKind): a TLS or
authentication problem must not look like a peer that is down.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from raftpg.config import Auth, RestApiSettings
from raftpg.http.problems import FailureKind, PeerProblem, ProblemBook

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
REFUSED_HANDSHAKE = "the server closed the TLS handshake: our client certificate is missing or not signed by its CA"


@dataclass(frozen=True)
class TlsFiles:
    """Where the trust anchor and our client certificate are; `insecure` skips server verification."""

    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    insecure: bool = False

    def context(self, *, max_tls12: bool = False) -> ssl.SSLContext:
        """`max_tls12` is for the handshake probe: with TLS 1.2 a refused client certificate
        fails the handshake itself, where TLS 1.3 only closes the connection afterwards."""
        return make_ssl_context(self.cafile, self.certfile, self.keyfile, self.insecure, max_tls12=max_tls12)


def make_ssl_context(cafile: Path | None, certfile: Path | None, keyfile: Path | None,
                     insecure: bool = False, *, max_tls12: bool = False) -> ssl.SSLContext:
    """Verify the server with `cafile` (or the system store); present a client cert when given."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if max_tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile is not None else None)
    return context


def member_tls(restapi: RestApiSettings) -> TlsFiles | None:
    """What a member needs to call another member: the cluster CA and its own certificate.

    Without a cafile, a member's own (self-signed) certificate is the trust anchor."""
    if restapi.certfile is None and restapi.cafile is None:
        return None
    cafile = restapi.cafile if restapi.cafile is not None else restapi.certfile
    return TlsFiles(cafile=cafile, certfile=restapi.certfile, keyfile=restapi.keyfile)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # parsed JSON, the text when the body is not JSON, None when empty
    headers: Mapping[str, str] = field(default_factory=dict)


class HttpFailure(Exception):
    """No HTTP answer: refused, timed out, a TLS failure, a name that does not resolve."""

    def __init__(self, url: str, kind: FailureKind, reason: str) -> None:
        super().__init__(f"cannot reach the REST API at {url}: "
                         + (reason if kind is FailureKind.UNREACHABLE else f"{kind.value}: {reason}"))
        self.url = url
        self.kind = kind
        self.reason = reason


def classify(exc: BaseException) -> tuple[FailureKind, str]:
    """Why a request got no answer, from the exception aiohttp raised."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return FailureKind.TLS, _ssl_text(exc.certificate_error)
    found = _ssl_error(exc)
    if found is not None:
        return FailureKind.TLS, _ssl_text(found)
    if isinstance(exc, TimeoutError):
        return FailureKind.UNREACHABLE, "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return FailureKind.UNREACHABLE, "connection refused"
        return FailureKind.UNREACHABLE, os_error.strerror or str(os_error)
    return FailureKind.UNREACHABLE, str(exc) or type(exc).__name__


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        nested = getattr(current, "os_error", None)
        if isinstance(nested, ssl.SSLError):
            return nested
        current = current.__cause__ or current.__context__
    return None


def _ssl_text(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason).replace("_", " ").lower()
    return str(error)


def _closed_early(exc: BaseException) -> bool:
    """A connection closed without an answer: over TLS 1.3 this is how a refused client cert looks."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)


class HttpClient:
    """JSON over HTTP(S) with optional Basic auth; one instance per configuration."""

    def __init__(self, tls: TlsFiles | None = None, auth: Auth | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.tls = tls
        self.auth = auth
        self.timeout = timeout
        self._ssl = tls.context() if tls is not None else None

    def new_session(self) -> aiohttp.ClientSession:
        """A session on the running loop; the caller closes it."""
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
        return aiohttp.ClientSession(connector=connector)

    async def request(self, session: aiohttp.ClientSession, method: str, url: str, body: Any = None, *,
                      headers: Mapping[str, str] | None = None, timeout: float | None = None) -> Answer:
        """Any HTTP answer is returned (2xx or not); only "no answer" raises HttpFailure."""
        limit = self.timeout if timeout is None else timeout
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        logger.debug("%s %s (timeout %.1fs)", method, url, limit)
        try:
            async with session.request(method, URL(url, encoded=True), data=data, headers=all_headers,
                                       timeout=aiohttp.ClientTimeout(total=limit)) as response:
                raw = await response.read()
                return Answer(response.status, _decode(raw), dict(response.headers.items()))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            kind, reason = classify(exc)
            if kind is FailureKind.UNREACHABLE and _closed_early(exc) and await self._handshake_refused(url, limit):
                kind, reason = FailureKind.TLS, REFUSED_HANDSHAKE
            raise HttpFailure(url, kind, reason) from None

    async def _handshake_refused(self, url: str, timeout: float) -> bool:
        """Repeat the handshake alone, capped at TLS 1.2, to tell a refused client certificate
        from a server that just went away (the probe's handshake then succeeds or is refused)."""
        target = URL(url)
        if self.tls is None or target.scheme != "https" or target.host is None:
            return False
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port, ssl=self.tls.context(max_tls12=True)), timeout)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        return False

    def request_blocking(self, method: str, url: str, body: Any = None, *,
                         headers: Mapping[str, str] | None = None, timeout: float | None = None) -> Answer:
        """request() for blocking callers (the CLI, the launcher): a short-lived loop and session."""
        async def once() -> Answer:
            async with self.new_session() as session:
                return await self.request(session, method, url, body, headers=headers, timeout=timeout)

        return asyncio.run(once())


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class MemberClient:
    """The daemon's client for the other members: one session for the process lifetime, and a
    record of peers that fail for reasons an operator must fix."""

    def __init__(self, restapi: RestApiSettings) -> None:
        self.http = HttpClient(member_tls(restapi))
        self._book = ProblemBook()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Created on first use, on the running loop."""
        if self._session is None:
            self._session = self.http.new_session()
        return self._session

    async def get_json(self, peer: str, url: str, timeout: float) -> Any:
        """The peer's JSON answer to GET `url`; None (and the reason noted) when there is none."""
        try:
            answer = await self.http.request(self.session, "GET", url, timeout=timeout)
        except HttpFailure as failure:
            self._book.failed(peer, url, failure.kind, failure.reason)
            return None
        if answer.status in (401, 403):
            self._book.failed(peer, url, FailureKind.AUTH, f"HTTP {answer.status}")
            return None
        self._book.succeeded(peer)
        return answer.body

    def problems(self) -> Mapping[str, PeerProblem]:
        """Peers that currently fail for a TLS or authentication reason."""
        return self._book.problems()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
