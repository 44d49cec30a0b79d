"""The HTTP side of `raftpg ctl`: one small blocking client for the REST API, every call bounded.

Requests go through raftpg's one HTTP client (raftpg.http.client), every one with a timeout;
each failure becomes one of two exceptions with a message an operator can act on: the API
answered "no" (ApiError), or nobody answered (Unreachable, with the reason's kind).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftpg.config import Auth
from raftpg.http.client import DEFAULT_TIMEOUT, HttpClient, HttpFailure, TlsFiles
from raftpg.http.problems import FailureKind


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

    def __init__(self, message: str, kind: FailureKind = FailureKind.UNREACHABLE, reason: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason or message


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


class ApiClient:
    """Blocking JSON-over-HTTP(S) calls through the one HTTP client (raftpg.http.client)."""

    def __init__(self, auth: Auth | None = None, timeout: float = DEFAULT_TIMEOUT,
                 tls: TlsFiles | None = None) -> None:
        self.http = HttpClient(tls, auth, timeout)

    @property
    def timeout(self) -> float:
        return self.http.timeout

    def request(self, method: str, url: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response:
        """Any HTTP answer is returned (2xx or not); only "no answer" raises Unreachable."""
        try:
            answer = self.http.request_blocking(method, url, body, headers=headers, timeout=timeout)
        except HttpFailure as failure:
            raise Unreachable(str(failure), failure.kind, failure.reason) from None
        return Response(answer.status, answer.body, answer.headers)

    def call(self, method: str, url: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
             timeout: float | None = None) -> Response:
        """Like request(), but a non-2xx answer raises ApiError with the API's message."""
        response = self.request(method, url, body, headers=headers, timeout=timeout)
        if not 200 <= response.status < 300:
            raise ApiError(url, response.status, error_message(response.body, response.status))
        return response


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
