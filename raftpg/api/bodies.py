"""Reading and checking request bodies: every bad input becomes a 4xx with a JSON error.

Handlers validate the whole body before touching the backend, so a rejected request has
changed nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, NoReturn

from aiohttp import web


class ApiError(Exception):
    """Answer the request with `status` and {"error": message}; raised anywhere in a handler."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.details}


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


async def read_object(request: web.Request, timeout: float, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; an empty body is {} when `optional`.

    The whole body must arrive within `timeout` seconds: a client trickling it must not hold a
    handler (and a connection) for ever.
    """
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout:g}s") from None
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(400, "the request body must be a JSON object")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON in the request body: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_kind(data)}")
    return data


def check_keys(body: Mapping[str, Any], allowed: Collection[str]) -> None:
    unknown = sorted(key for key in body if key not in allowed)
    if unknown:
        raise ApiError(400, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def get_str(body: Mapping[str, Any], key: str) -> str | None:
    """A non-empty string, or None when missing or null."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string, got {_kind(value)}")
    if not value.strip():
        raise ApiError(400, f"{key} must not be empty")
    return value


def get_bool(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"{key} must be true or false, got {_kind(value)}")
    return value


def parse_schedule(text: str, key: str, wall_now: float) -> float:
    """ISO 8601 with a time zone -> Unix seconds. 400 if unreadable, 422 if in the past (Patroni)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{key}: unable to parse {text!r} as an ISO 8601 timestamp") from None
    if when.tzinfo is None:
        raise ApiError(400, f"{key}: time zone information is mandatory (e.g. 2030-01-01T12:00+00:00)")
    timestamp = when.timestamp()
    if timestamp < wall_now:
        raise ApiError(422, f"{key}: {text} is in the past")
    return timestamp


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
             bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
