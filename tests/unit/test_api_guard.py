"""The REST API under hostile clients: real server on loopback, real sockets, real TLS.

Deadlines are made short so the tests are quick; what is asserted is the behaviour (cut off,
refused, still answering), never how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from raftpg.api import ApiOptions, ApiServer, start_api
from raftpg.api.guard import REFUSAL, ConnectionLimits
from raftpg.api.server import FD_RESERVE, fd_capacity
from raftpg.cli.certs import write_ca, write_node_cert
from tests.unit.api_fakes import FakeBackend, make_settings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

LONG = 60.0  # a deadline the test never reaches
SLOW_HEAD = b"GET /primary HTTP/1.1\r\nHost: node1\r\nX-Slow: "
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def serving(limits: ConnectionLimits, tls_dir: Path | None = None,
                  options: ApiOptions | None = None) -> AsyncIterator[ApiServer]:
    """The real server (start_api) in front of a fake backend that answers like a primary."""
    settings = make_settings()
    if tls_dir is not None:
        write_ca(tls_dir / "ca")
        files = write_node_cert(tls_dir / "ca", tls_dir / "node1", "node1", ["127.0.0.1"])
        settings = make_settings(certfile=files.cert, keyfile=files.key, cafile=files.ca_cert)
    server = await start_api(FakeBackend(settings=settings), options, limits)
    try:
        yield server
    finally:
        await server.stop()


def trusting(tls_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_dir / "node1" / "ca.crt"))


async def get_primary(server: ApiServer, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    host, port = server.addresses[0]
    url = f"{'https' if context else 'http'}://{host}:{port}/primary"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
            session.get(url, ssl=context if context is not None else False) as response:
        return response.status, await response.text()


async def connect(server: ApiServer) -> Connection:
    host, port = server.addresses[0]
    return await asyncio.open_connection(host, port)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(4096):
            received += chunk
    return received


async def trickle(writer: asyncio.StreamWriter, closed: asyncio.Future[bytes]) -> None:
    """A slowloris client: the request head one byte at a time, never finished, until cut off."""
    sent = 0
    with contextlib.suppress(ConnectionError):
        while not closed.done():
            writer.write(SLOW_HEAD[sent:sent + 1] if sent < len(SLOW_HEAD) else b"a")
            await writer.drain()
            sent += 1
            await asyncio.sleep(0.02)


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll server-side state (no event to wait on: the guard's counters are plain integers)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.close()


def test_fd_capacity_raises_the_soft_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4 * FD_RESERVE:
        pytest.skip(f"hard open-file limit {hard} too low to test raising the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_RESERVE + 100, hard))
    try:
        assert fd_capacity(FD_RESERVE) == FD_RESERVE
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 2 * FD_RESERVE
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimits(max_connections=0)
    with pytest.raises(ValueError, match="head_timeout"):
        ConnectionLimits(head_timeout=0)


async def test_slowloris_is_cut_off_while_primary_answers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="raftpg.api.guard")
    async with serving(ConnectionLimits(head_timeout=0.5, idle_timeout=LONG)) as server:
        reader, writer = await connect(server)
        closed = asyncio.ensure_future(read_until_closed(reader))
        slowloris = asyncio.ensure_future(trickle(writer, closed))
        await wait_for(lambda: server.guard.open_connections == 1)
        assert (await get_primary(server))[0] == 200  # answered while the slow head is pending
        assert await closed == b""  # cut off without an answer, though a byte kept coming every 20 ms
        await slowloris
        writer.close()
        assert server.guard.cut_slow == 1
        assert (await get_primary(server))[0] == 200
    assert "sent no complete request head within 0.5s" in caplog.text


async def test_a_connection_that_sends_nothing_is_cut_off() -> None:
    async with serving(ConnectionLimits(head_timeout=0.3, idle_timeout=LONG)) as server:
        reader, writer = await connect(server)
        assert await read_until_closed(reader) == b""
        writer.close()
        assert server.guard.cut_slow == 1


async def test_an_idle_keep_alive_connection_is_closed_after_serving() -> None:
    async with serving(ConnectionLimits(head_timeout=LONG, idle_timeout=0.3)) as server:
        reader, writer = await connect(server)
        writer.write(b"GET /primary HTTP/1.1\r\nHost: node1\r\n\r\n")
        answer = await read_until_closed(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert server.guard.cut_idle == 1
        assert server.guard.cut_slow == 0


async def test_a_slow_second_request_on_a_kept_alive_connection_is_cut_off() -> None:
    async with serving(ConnectionLimits(head_timeout=0.3, idle_timeout=LONG)) as server:
        reader, writer = await connect(server)
        writer.write(b"GET /primary HTTP/1.1\r\nHost: node1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)
        assert length is not None
        await reader.readexactly(int(length.group(1)))
        writer.write(SLOW_HEAD)  # the next request's head, never finished
        assert await read_until_closed(reader) == b""
        writer.close()
        assert (server.guard.cut_slow, server.guard.cut_idle) == (1, 0)


async def test_a_tls_client_that_never_handshakes_is_dropped(tmp_path: Path) -> None:
    async with serving(ConnectionLimits(handshake_timeout=0.5), tmp_path) as server:
        stalled = [await connect(server) for _ in range(3)]
        await wait_for(lambda: server.guard.open_connections == 3)
        assert (await get_primary(server, trusting(tmp_path)))[0] == 200
        for reader, _ in stalled:
            assert await read_until_closed(reader) == b""
        close_all(stalled)
        assert (await get_primary(server, trusting(tmp_path)))[0] == 200


async def test_connections_past_the_limit_are_refused_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="raftpg.api.guard")
    async with serving(ConnectionLimits(max_connections=3, head_timeout=LONG)) as server:
        idle = [await connect(server) for _ in range(3)]
        await wait_for(lambda: server.guard.open_connections == 3)
        reader, writer = await connect(server)
        assert await read_until_closed(reader) == REFUSAL
        writer.close()
        status, body = await get_primary(server)
        assert (status, body) == (503, '{"error": "too many open connections"}')
        assert server.guard.refused == 2
        assert "3 connections open (limit 3): refusing new ones" in caplog.text
        idle.pop()[1].close()
        await wait_for(lambda: server.guard.open_connections == 2)
        assert (await get_primary(server))[0] == 200
        close_all(idle)


async def test_stalled_tls_handshakes_count_toward_the_limit(tmp_path: Path) -> None:
    limits = ConnectionLimits(max_connections=2, handshake_timeout=LONG, head_timeout=LONG)
    async with serving(limits, tmp_path) as server:
        stalled = [await connect(server) for _ in range(2)]
        await wait_for(lambda: server.guard.open_connections == 2)
        assert (await get_primary(server, trusting(tmp_path)))[0] == 503
        close_all(stalled)


async def test_a_body_that_never_arrives_is_408() -> None:
    async with serving(ConnectionLimits(), options=ApiOptions(body_timeout=0.3)) as server:
        reader, writer = await connect(server)
        writer.write(b"POST /switchover HTTP/1.1\r\nHost: node1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"leader\": ")
        answer = await read_until_closed(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"did not arrive within 0.3s" in answer


async def test_primary_answers_under_every_attack_at_once(tmp_path: Path) -> None:
    limits = ConnectionLimits(handshake_timeout=LONG, head_timeout=LONG, idle_timeout=LONG)
    async with serving(limits, tmp_path) as server:
        context = trusting(tmp_path)
        stalled_tls = [await connect(server) for _ in range(5)]
        idle = [await asyncio.open_connection(*server.addresses[0], ssl=context) for _ in range(50)]
        slow = [await asyncio.open_connection(*server.addresses[0], ssl=context) for _ in range(20)]
        closed = [asyncio.ensure_future(read_until_closed(reader)) for reader, _ in slow]
        slowloris = [asyncio.ensure_future(trickle(writer, done))
                     for (_, writer), done in zip(slow, closed, strict=True)]
        await wait_for(lambda: server.guard.open_connections == 75)
        answers = [await get_primary(server, context) for _ in range(20)]
        assert [status for status, _ in answers] == [200] * 20
        assert server.guard.open_connections >= 75  # the attack was still there while they were answered
        assert not any(done.done() for done in closed)
        for task in slowloris:
            task.cancel()
        close_all(stalled_tls + idle + slow)
