"""raftpg's REST API (aiohttp): Patroni-compatible health checks, status documents, operator actions,
Raft membership and /metrics (app.py routes them; server.py serves them with TLS and the guard)."""

from raftpg.api.app import ApiOptions, make_app
from raftpg.api.backend import ClusterInfo, NodeBackend
from raftpg.api.server import ApiServer, start_api, tls_context

__all__ = ["ApiOptions", "ApiServer", "ClusterInfo", "NodeBackend", "make_app", "start_api", "tls_context"]
