"""The dynamic configuration's version as HTTP sees it: If-Match (compare-and-set on the version) and ETag."""

from __future__ import annotations

from raftpg.api.bodies import ApiError


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
