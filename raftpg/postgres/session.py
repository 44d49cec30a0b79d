"""One superuser connection to the local PostgreSQL over its unix socket.

Kept open between HA cycles (a connection per status call would cost a backend fork each
time) and thrown away after any error that may have left it unusable, including a timeout:
the next call reconnects. Every query runs with a server-side statement_timeout equal to the
caller's timeout, and the whole call (lock, connect, query) is bounded client-side too.
"""

import asyncio
import contextlib
import logging
import math
from pathlib import Path
from typing import Any, LiteralString, TypeAlias

import psycopg
from psycopg import sql
from psycopg.abc import Params
from psycopg.rows import TupleRow

from raftpg.postgres.errors import QueryFailed

logger = logging.getLogger(__name__)

Statement: TypeAlias = LiteralString | bytes | sql.SQL | sql.Composed

_CLOSE_TIMEOUT = 1.0


class PgSession:
    def __init__(
        self,
        *,
        socket_dir: Path,
        port: int,
        user: str,
        password: str | None,
        dbname: str = "postgres",
        application_name: str = "raftpg",
    ) -> None:
        self._connect_args: dict[str, Any] = {
            "host": str(socket_dir),
            "port": port,
            "user": user,
            "dbname": dbname,
            "application_name": application_name,
            # raftpg's own statements never wait for a synchronous standby: a commit of ours (a
            # role, the nudge after naming standbys) must not hang on the replication it manages.
            "options": "-c synchronous_commit=local",
        }
        if password is not None:
            self._connect_args["password"] = password
        self._lock = asyncio.Lock()
        self._conn: psycopg.AsyncConnection[TupleRow] | None = None
        self._statement_timeout_ms: int | None = None

    async def fetch(
        self, query: Statement, params: Params | None = None, *, timeout: float
    ) -> list[TupleRow]:
        """Run one statement (autocommit) and return its rows ([] if it returns none)."""
        try:
            async with asyncio.timeout(timeout), self._lock:
                try:
                    return await self._run(query, params, timeout)
                except BaseException as exc:
                    if not isinstance(exc, psycopg.Error) or self._unusable(exc):
                        await self._drop()
                    raise
        except TimeoutError:
            raise QueryFailed(f"query did not finish within {timeout:.1f}s") from None
        except psycopg.Error as exc:
            raise QueryFailed(f"{type(exc).__name__}: {exc}".strip()) from exc

    async def encrypt_password(self, user: str, password: str, *, timeout: float) -> str:
        """SCRAM verifier computed client-side, so a cleartext password never reaches server logs."""
        try:
            async with asyncio.timeout(timeout), self._lock:
                conn = await self._connected(timeout)
                verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
                return verifier.decode()
        except TimeoutError:
            raise QueryFailed(f"could not connect within {timeout:.1f}s") from None
        except psycopg.Error as exc:
            await self._drop()
            raise QueryFailed(f"{type(exc).__name__}: {exc}".strip()) from exc

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _connected(self, timeout: float) -> psycopg.AsyncConnection[TupleRow]:
        conn = self._conn
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                **self._connect_args, connect_timeout=max(2, math.ceil(timeout)), autocommit=True
            )
            self._conn = conn
            self._statement_timeout_ms = None
        return conn

    async def _run(self, query: Statement, params: Params | None, timeout: float) -> list[TupleRow]:
        conn = await self._connected(timeout)
        timeout_ms = max(1, int(timeout * 1000))
        if timeout_ms != self._statement_timeout_ms:
            await conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{timeout_ms}ms",))
            self._statement_timeout_ms = timeout_ms
        cursor = await conn.execute(query, params)
        if cursor.description is None:
            return []
        return await cursor.fetchall()

    def _unusable(self, exc: psycopg.Error) -> bool:
        return self._conn is None or self._conn.broken or isinstance(exc, psycopg.OperationalError)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), _CLOSE_TIMEOUT)
