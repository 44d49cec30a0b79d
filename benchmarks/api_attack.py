"""The two processes of the REST API load benchmark besides the measuring one.

`serve`: the real API server (start_api, default ConnectionLimits, TLS) in front of a fake
backend that answers like a primary, plus a timer measuring its own lateness on the same event
loop, standing in for the HA loop's lease renewals. On "stats" on stdin it prints one JSON
line: the guard's counters and the timer's lateness since the previous "stats"; end of input
stops it.

`attack`: keeps N idle TLS connections, M slowloris clients (a request head one byte at a
time, never finished) and K TCP connections that never finish the TLS handshake open,
reconnecting whenever the server cuts one, like a persistent attacker. It prints "ready" once
every connection was opened the first time, and a JSON line of counters at end of input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from raftpg.api import start_api
from raftpg.api.server import fd_capacity
from tests.unit.api_fakes import FakeBackend, make_settings

LAG_INTERVAL = 0.02
"""Seconds between two ticks of the lag timer (a renewal-like task that must never be late)."""
RECONNECT_DELAY = 0.05
SLOW_HEAD = b"GET /primary HTTP/1.1\r\nHost: node1\r\nUser-Agent: slowloris\r\nX-Padding: "


@dataclass
class AttackCounters:
    opened: dict[str, int] = field(default_factory=lambda: {"idle": 0, "slowloris": 0, "stalled_tls": 0})
    cut_by_server: dict[str, int] = field(default_factory=lambda: {"idle": 0, "slowloris": 0, "stalled_tls": 0})
    connect_errors: int = 0


async def read_stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- the server


async def watch_lag(samples: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LAG_INTERVAL
        await asyncio.sleep(LAG_INTERVAL)
        samples.append(loop.time() - due)


async def serve(certs: Path) -> None:
    settings = make_settings(certfile=certs / "node1.crt", keyfile=certs / "node1.key", cafile=certs / "ca.crt")
    server = await start_api(FakeBackend(settings=settings))
    samples: list[float] = []
    lag = asyncio.ensure_future(watch_lag(samples))
    emit(json.dumps({"port": server.addresses[0][1], "limits": asdict(server.guard.limits)}))
    commands = await read_stdin_lines()
    try:
        while line := (await commands.readline()).decode().strip():
            if line == "stats":
                guard = server.guard
                emit(json.dumps({"lag": samples, "open_connections": guard.open_connections,
                                 "refused": guard.refused, "cut_slow": guard.cut_slow, "cut_idle": guard.cut_idle}))
                samples.clear()
    finally:
        lag.cancel()
        await server.stop()


# --------------------------------------------------------------------------- the attacker


async def wait_closed(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while await reader.read(4096):
            pass


async def idle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await wait_closed(reader)


async def slowloris_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           trickle_interval: float) -> None:
    closed = asyncio.ensure_future(wait_closed(reader))
    sent = 0
    try:
        while not closed.done():
            writer.write(SLOW_HEAD[sent:sent + 1] if sent < len(SLOW_HEAD) else b"a")
            await writer.drain()
            sent += 1
            await asyncio.wait([closed], timeout=trickle_interval)
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        closed.cancel()


async def stalled_tls_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x16\x03\x01")  # the first bytes of a TLS record header, and nothing more
    await wait_closed(reader)


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Client = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Connect = Callable[[], Awaitable[Streams]]


async def keep_open(kind: str, client: Client, connect: Connect, counters: AttackCounters,
                    opened: asyncio.Event) -> None:
    """One attacking connection, reopened whenever the server closes it."""
    while True:
        try:
            reader, writer = await connect()
        except (OSError, ssl.SSLError):
            counters.connect_errors += 1
            await asyncio.sleep(RECONNECT_DELAY)
            continue
        counters.opened[kind] += 1
        opened.set()
        try:
            await client(reader, writer)
        finally:
            writer.close()
        counters.cut_by_server[kind] += 1
        await asyncio.sleep(RECONNECT_DELAY)


async def attack(port: int, cafile: Path, idle: int, slowloris: int, stalled: int, trickle_interval: float) -> None:
    fd_capacity(idle + slowloris + stalled)
    context = ssl.create_default_context(cafile=str(cafile))
    counters = AttackCounters()

    async def tls() -> Streams:
        return await asyncio.open_connection("127.0.0.1", port, ssl=context, ssl_handshake_timeout=30)

    async def tcp() -> Streams:
        return await asyncio.open_connection("127.0.0.1", port)

    async def trickling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await slowloris_client(reader, writer, trickle_interval)

    plan: Sequence[tuple[str, Client, Connect]] = (
        [("idle", idle_client, tls)] * idle + [("slowloris", trickling, tls)] * slowloris
        + [("stalled_tls", stalled_tls_client, tcp)] * stalled)
    tasks = []
    for kind, client, connect in plan:  # one at a time, so the first round does not overflow the backlog
        opened = asyncio.Event()
        tasks.append(asyncio.ensure_future(keep_open(kind, client, connect, counters, opened)))
        await opened.wait()
    emit("ready")
    commands = await read_stdin_lines()
    while await commands.readline():
        pass
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    emit(json.dumps(asdict(counters)))


def main() -> None:
    role = sys.argv[1]
    if role == "serve":
        asyncio.run(serve(Path(sys.argv[2])))
    elif role == "attack":
        port, cafile, idle, slowloris, stalled, trickle = sys.argv[2:8]
        asyncio.run(attack(int(port), Path(cafile), int(idle), int(slowloris), int(stalled), float(trickle)))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
