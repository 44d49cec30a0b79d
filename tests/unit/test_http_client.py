"""The one HTTP client against real local aiohttp servers with real certificates: which failures
are TLS or authentication problems (WARNING, kept for /patroni) and which are a peer that is down."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web

from raftpg.api.documents import peer_problems_document
from raftpg.api.server import tls_context
from raftpg.cli.certs import NodeCertFiles, write_ca, write_node_cert
from raftpg.config import Address, Auth, RestApiSettings
from raftpg.http.client import REFUSED_HANDSHAKE, HttpClient, HttpFailure, MemberClient, TlsFiles, member_tls
from raftpg.http.problems import FailureKind, PeerProblem, ProblemBook

pytestmark = pytest.mark.timeout(30)


@dataclass(frozen=True)
class Pki:
    server: NodeCertFiles  # signed by the cluster CA
    client: NodeCertFiles  # signed by the cluster CA
    stranger: NodeCertFiles  # signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    write_ca(base / "ca")
    write_ca(base / "other-ca")
    return Pki(server=write_node_cert(base / "ca", base / "server", "server", ["127.0.0.1"]),
               client=write_node_cert(base / "ca", base / "client", "client", ["127.0.0.1"]),
               stranger=write_node_cert(base / "other-ca", base / "stranger", "stranger", ["127.0.0.1"]))


def restapi(port: int, files: NodeCertFiles | None, verify_client: str = "required",
            auth: Auth | None = None) -> RestApiSettings:
    return RestApiSettings(listen=Address("127.0.0.1", port), connect_address=Address("127.0.0.1", port),
                           authentication=auth, certfile=files.cert if files else None,
                           keyfile=files.key if files else None, cafile=files.ca_cert if files else None,
                           verify_client=verify_client if files else "none")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def patroni(request: web.Request) -> web.StreamResponse:
    return web.json_response({"state": "running", "role": "replica"})


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[RestApiSettings, Handler], Awaitable[str]]]:
    """Start a real aiohttp server with raftpg's server TLS settings; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(settings: RestApiSettings, handler: Handler = patroni) -> str:
        app = web.Application()
        app.router.add_get("/patroni", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", settings.listen.port, ssl_context=tls_context(settings))
        await site.start()
        return settings.url

    yield start
    for runner in runners:
        await runner.cleanup()


async def ask(client: HttpClient, url: str, timeout: float = 3.0) -> int:
    async with client.new_session() as session:
        return (await client.request(session, "GET", f"{url}/patroni", timeout=timeout)).status


async def failure(client: HttpClient, url: str, timeout: float = 3.0) -> HttpFailure:
    with pytest.raises(HttpFailure) as caught:
        await ask(client, url, timeout)
    return caught.value


async def test_trusted_both_ways_answers(pki: Pki, serve: Callable[..., Awaitable[str]]) -> None:
    url = await serve(restapi(free_port(), pki.server))
    client = HttpClient(TlsFiles(pki.client.ca_cert, pki.client.cert, pki.client.key))
    assert await ask(client, url) == 200


async def test_a_server_certificate_from_another_ca_fails_verification(
        pki: Pki, serve: Callable[..., Awaitable[str]]) -> None:
    url = await serve(restapi(free_port(), pki.stranger, verify_client="none"))
    found = await failure(HttpClient(TlsFiles(pki.client.ca_cert, pki.client.cert, pki.client.key)), url)
    assert found.kind is FailureKind.TLS
    assert found.reason.startswith("certificate verify failed")


@pytest.mark.parametrize("who", ["nobody", "stranger"])
async def test_a_missing_or_untrusted_client_certificate_is_a_refused_handshake(
        pki: Pki, serve: Callable[..., Awaitable[str]], who: str) -> None:
    url = await serve(restapi(free_port(), pki.server))
    own = pki.stranger if who == "stranger" else None
    client = HttpClient(TlsFiles(pki.client.ca_cert, own.cert if own else None, own.key if own else None))
    found = await failure(client, url)
    assert (found.kind, found.reason) == (FailureKind.TLS, REFUSED_HANDSHAKE)


async def test_a_closed_port_is_unreachable_not_tls(pki: Pki) -> None:
    client = HttpClient(TlsFiles(pki.client.ca_cert, pki.client.cert, pki.client.key))
    found = await failure(client, f"https://127.0.0.1:{free_port()}")
    assert (found.kind, found.reason) == (FailureKind.UNREACHABLE, "connection refused")


async def test_a_slow_server_is_a_timeout_not_tls(pki: Pki, serve: Callable[..., Awaitable[str]]) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response({})

    url = await serve(restapi(free_port(), pki.server), slow)
    found = await failure(HttpClient(TlsFiles(pki.client.ca_cert, pki.client.cert, pki.client.key)), url, 0.3)
    assert (found.kind, found.reason) == (FailureKind.UNREACHABLE, "timed out")


async def test_member_client_remembers_tls_and_auth_problems_but_not_timeouts(
        pki: Pki, serve: Callable[..., Awaitable[str]], caplog: pytest.LogCaptureFixture) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "authentication required"}, status=401)

    good = await serve(restapi(free_port(), pki.server))
    strange = await serve(restapi(free_port(), pki.stranger, verify_client="none"))
    locked = await serve(restapi(free_port(), pki.server), refuse)
    client = MemberClient(restapi(free_port(), pki.client))
    try:
        with caplog.at_level(logging.DEBUG, logger="raftpg.http.problems"):
            assert await client.get_json("good", f"{good}/patroni", 3.0) == {"state": "running", "role": "replica"}
            assert await client.get_json("strange", f"{strange}/patroni", 3.0) is None
            assert await client.get_json("strange", f"{strange}/patroni", 3.0) is None
            assert await client.get_json("locked", f"{locked}/patroni", 3.0) is None
            assert await client.get_json("down", f"https://127.0.0.1:{free_port()}/patroni", 3.0) is None
    finally:
        await client.close()
    problems = client.problems()
    assert set(problems) == {"strange", "locked"}
    assert problems["strange"].kind is FailureKind.TLS and "certificate verify failed" in problems["strange"].reason
    assert problems["locked"].text == "authentication: HTTP 401"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "peer strange" in w]) == 1, warnings  # rate-limited
    assert not [w for w in warnings if "peer down" in w]
    assert any("peer down unreachable" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)


def test_problem_book_warns_once_a_minute_per_reason_and_forgets_on_success(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    book = ProblemBook(interval=60.0, clock=lambda: now[0], wall_clock=lambda: 5.0e8 + now[0])
    with caplog.at_level(logging.INFO, logger="raftpg.http.problems"):
        book.failed("n2", "https://n2", FailureKind.TLS, "bad cert")
        now[0] += 30
        book.failed("n2", "https://n2", FailureKind.TLS, "bad cert")
        book.failed("n2", "https://n2", FailureKind.AUTH, "HTTP 401")  # a new reason is told at once
        now[0] += 31
        book.failed("n2", "https://n2", FailureKind.TLS, "bad cert")
        book.failed("n3", "https://n3", FailureKind.UNREACHABLE, "timed out")
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 3, warned
        assert book.problems()["n2"].reason == "bad cert" and book.problems()["n2"].since == 5.0e8 + 1061
        assert "n3" not in book.problems()
        book.succeeded("n2")
    assert dict(book.problems()) == {}
    assert any("n2 answers again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_member_tls_trusts_the_cluster_ca_and_presents_the_own_certificate(pki: Pki) -> None:
    assert member_tls(restapi(8008, None)) is None
    files = member_tls(restapi(8008, pki.client))
    assert files == TlsFiles(pki.client.ca_cert, pki.client.cert, pki.client.key)


def test_patroni_document_lists_peer_problems_by_name() -> None:
    problems = {"n3": PeerProblem(FailureKind.TLS, REFUSED_HANDSHAKE, 0.0),
                "n2": PeerProblem(FailureKind.AUTH, "HTTP 401", 60.0)}
    assert peer_problems_document(problems) == {
        "n2": {"kind": "authentication", "reason": "HTTP 401", "since": "1970-01-01T00:01:00+00:00"},
        "n3": {"kind": "TLS", "reason": REFUSED_HANDSHAKE, "since": "1970-01-01T00:00:00+00:00"},
    }
