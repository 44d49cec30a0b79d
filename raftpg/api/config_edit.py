"""Editing the dynamic configuration: JSON merge patch (RFC 7396) and If-Match versions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raftpg.api.bodies import ApiError


def thaw(value: Any) -> Any:
    """Plain dicts and lists all the way down (the replicated state may hand out read-only views)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Objects merge key by key, null deletes the key, anything else replaces (as Patroni's PATCH)."""
    result: dict[str, Any] = thaw(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            base = result.get(key)
            result[key] = merge_patch(base if isinstance(base, Mapping) else {}, value)
        else:
            result[key] = thaw(value)
    return result


def parse_if_match(header: str | None) -> int | None:
    """The config version an If-Match header asks for: 7, "7" and W/"7" all mean 7; absent or * mean any."""
    if header is None:
        return None
    text = header.strip()
    if text == "*":
        return None
    text = text.removeprefix("W/").strip().strip('"')
    if not text.isdigit():
        raise ApiError(400, f"If-Match must be a configuration version number, got {header!r}")
    return int(text)


def etag(version: int) -> str:
    return f'"{version}"'
