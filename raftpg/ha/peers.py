"""Asking the other members how far they are, over their REST APIs (as Patroni does in a race).

The Raft member records may be up to loop_wait old; a leader race must compare live positions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from raftpg.ha.views import MemberView, PeerPosition
from raftpg.http.client import MemberClient


async def fetch_peer_positions(
    client: MemberClient, members: Iterable[MemberView], timeout: float
) -> dict[str, PeerPosition]:
    targets = [m for m in members if m.api_url]
    answers = await asyncio.gather(*(_ask(client, m, timeout) for m in targets))
    return {p.name: p for p in answers}


async def _ask(client: MemberClient, member: MemberView, timeout: float) -> PeerPosition:
    body = await fetch_status(client, member, timeout)
    if body is None:
        return PeerPosition(name=member.name, reachable=False)
    return peer_position_from_status(member.name, body)


async def fetch_status(client: MemberClient, member: MemberView, timeout: float) -> dict[str, Any] | None:
    """A member's /patroni document, or None if it gives none in time (the client notes why)."""
    body = await client.get_json(member.name, f"{member.api_url}/patroni", timeout)
    return body if isinstance(body, dict) else None


def peer_position_from_status(name: str, body: Mapping[str, Any]) -> PeerPosition:
    xlog = body.get("xlog") or {}
    tags = body.get("tags") or {}
    role = str(body.get("role", "unknown"))
    running = body.get("state") == "running"
    if role == "primary" and running:
        lsn = xlog.get("location")
    else:
        positions = [v for v in (xlog.get("received_location"), xlog.get("replayed_location")) if v is not None]
        lsn = max(positions) if positions else None
    return PeerPosition(
        name=name,
        reachable=True,
        role=role if running else "stopped",
        lsn=int(lsn) if lsn is not None and running else None,
        timeline=body.get("timeline"),
        nofailover=bool(tags.get("nofailover", False)),
        failover_priority=int(tags.get("failover_priority", 1)),
    )
