"""The HTTP side of `raftpg ctl`: one small blocking client for the REST API, every call bounded.

A CLI does one thing at a time, so plain urllib is enough; what matters is that every request
has a timeout and that each failure becomes one of two exceptions with a message an operator
can act on: the API answered "no" (ApiError), or nobody answered (Unreachable).
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftpg.config import Auth

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0


class CtlError(Exception):
    """A failure `raftpg ctl` reports in red and answers with exit code 1."""


class UsageError(CtlError):
    """Bad command-line input found after parsing; exit code 2."""


class ApiError(CtlError):
    """The API answered with a non-2xx status; `message` is its {"error": ...} text."""

    def __init__(self, url: str, status: int, message: str) -> None:
        super().__init__(f"{url}: HTTP {status}: {message}")
        self.url = url
        self.status = status
        self.message = message


class Unreachable(CtlError):
    """No HTTP answer at all: refused, timed out, TLS failure, name not resolved."""


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # parsed JSON, or the text when the body is not JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """A one-line human text for the body: Patroni answers plain text, raftpg JSON."""
        body = self.body
        if isinstance(body, dict):
            for key in ("message", "error", "status"):
                if isinstance(body.get(key), str):
                    return str(body[key])
            return json.dumps(body, sort_keys=True)
        return str(body).strip() if body is not None else ""


def error_message(body: Any, status: int) -> str:
    if isinstance(body, dict) and body.get("error") is not None:
        problems = body.get("problems")
        if isinstance(problems, list) and problems:
            return f"{body['error']}: " + "; ".join(str(p) for p in problems)
        return str(body["error"])
    if isinstance(body, str) and body.strip():
        return body.strip()
    if body:
        return json.dumps(body, sort_keys=True)
    return f"no error text (HTTP status {status})"


def make_ssl_context(cafile: Path | None, certfile: Path | None, keyfile: Path | None,
                     insecure: bool) -> ssl.SSLContext:
    """Verify the server with `cafile` (or the system store); present a client cert when given."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if certfile is not None:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile is not None else None)
    return context


class ApiClient:
    """Blocking JSON-over-HTTP(S) calls with Basic auth and a timeout on every request."""

    def __init__(self, auth: Auth | None = None, timeout: float = DEFAULT_TIMEOUT,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.auth = auth
        self.timeout = timeout
        self.ssl_context = ssl_context

    def request(self, method: str, url: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response:
        """Any HTTP answer is returned (2xx or not); only "no answer" raises Unreachable."""
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        limit = self.timeout if timeout is None else timeout
        context = self.ssl_context if url.startswith("https:") else None
        logger.debug("%s %s (timeout %.1fs)", method, url, limit)
        try:
            with urllib.request.urlopen(req, timeout=limit, context=context) as answer:
                return Response(answer.status, _decode(answer.read()), dict(answer.headers.items()))
        except urllib.error.HTTPError as exc:
            with exc:
                raw = exc.read()
            return Response(exc.code, _decode(raw), dict(exc.headers.items()) if exc.headers else {})
        except urllib.error.URLError as exc:
            raise Unreachable(f"cannot reach the REST API at {url}: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise Unreachable(f"cannot reach the REST API at {url}: no answer within {limit:g}s") from None
        except (OSError, ValueError) as exc:  # reset connections, malformed URLs
            raise Unreachable(f"cannot reach the REST API at {url}: {exc}") from None

    def call(self, method: str, url: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
             timeout: float | None = None) -> Response:
        """Like request(), but a non-2xx answer raises ApiError with the API's message."""
        response = self.request(method, url, body, headers=headers, timeout=timeout)
        if not 200 <= response.status < 300:
            raise ApiError(url, response.status, error_message(response.body, response.status))
        return response


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason}"
    return str(reason)


def join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def first_answer(client: ApiClient, bases: Sequence[str], path: str,
                 timeout: float | None = None) -> tuple[str, Response]:
    """GET `path` from the first of `bases` that answers 2xx; a 4xx is final, others try the next."""
    problems: list[str] = []
    for base in bases:
        url = join(base, path)
        try:
            response = client.call("GET", url, timeout=timeout)
        except ApiError as exc:
            if 400 <= exc.status < 500:
                raise
            problems.append(str(exc))
            continue
        except Unreachable as exc:
            problems.append(str(exc))
            continue
        return base, response
    if len(problems) == 1:
        raise Unreachable(problems[0])
    raise Unreachable("no REST API answered:\n  " + "\n  ".join(problems))
