"""GET/PUT /operations/<name>: an operator operation's progress record, kept in Raft.

A long operation driven from outside (`raftpg ctl rolling-restart`) stores its plan and progress
here so that any member's API shows it and a second ctl, on any host, can resume it. Writes are
compare-and-set on the record's revision: a 409 tells a ctl that someone else moved the
operation on, so two ctl processes never both drive it past that point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from raftpg.api.backend import ClusterInfo, NodeBackend
from raftpg.api.bodies import ApiError, check_keys, read_object

KNOWN_OPERATIONS = frozenset({"rolling_restart"})
MAX_RECORD_BYTES = 64 * 1024
"""A record is replicated and kept in every snapshot: progress, not a log."""


def operation_document(cluster: ClusterInfo, name: str) -> dict[str, Any]:
    """{name, revision, record}; revision 0 and a null record when the operation never ran."""
    current = cluster.operations.get(name) or {}
    revision = current.get("revision", 0)
    record = current.get("record")
    return {"name": name, "revision": revision if isinstance(revision, int) else 0,
            "record": dict(record) if isinstance(record, Mapping) else None}


def parse_update(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """The record (None ends the operation) and the revision the writer last read."""
    check_keys(body, ("record", "expected_revision"))
    if "record" not in body or "expected_revision" not in body:
        raise ApiError(400, "record and expected_revision are both required (record null ends the operation)")
    record, expected = body["record"], body["expected_revision"]
    if record is not None and not isinstance(record, dict):
        raise ApiError(400, f"record must be a JSON object or null, got {type(record).__name__}")
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise ApiError(400, f"expected_revision must be an integer >= 0, got {expected!r}")
    if record is not None and len(json.dumps(record)) > MAX_RECORD_BYTES:
        raise ApiError(413, f"record larger than {MAX_RECORD_BYTES} bytes")
    return record, expected


def _known(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in KNOWN_OPERATIONS:
        raise ApiError(404, f"unknown operation {name!r} (known: {', '.join(sorted(KNOWN_OPERATIONS))})")
    return name


class OperationHandlers:
    """The two handlers; unsafe methods are authenticated by the app's middleware like any other."""

    def __init__(self, backend: NodeBackend, body_timeout: float) -> None:
        self.backend = backend
        self.body_timeout = body_timeout

    async def get(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(operation_document(self.backend.cluster(), _known(request)))

    async def put(self, request: web.Request) -> web.StreamResponse:
        name = _known(request)
        record, expected = parse_update(await read_object(request, self.body_timeout))
        if not await self.backend.set_operation(name, record, expected):
            current = operation_document(self.backend.cluster(), name)
            raise ApiError(409, f"operation {name} is at revision {current['revision']}, not {expected}: "
                                "someone else changed it; read it again", **current)
        return web.json_response({"name": name, "revision": expected + 1, "record": record})


def add_routes(router: web.UrlDispatcher, backend: NodeBackend, body_timeout: float) -> None:
    handlers = OperationHandlers(backend, body_timeout)
    router.add_get("/operations/{name}", handlers.get)
    router.add_put("/operations/{name}", handlers.put)
