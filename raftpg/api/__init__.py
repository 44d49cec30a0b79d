"""raftpg's REST API: Patroni-compatible health checks, status, operator actions, /metrics."""

from raftpg.api.app import ApiOptions, make_app
from raftpg.api.backend import ClusterInfo, NodeBackend
from raftpg.api.server import ApiServer, start_api, tls_context

__all__ = ["ApiOptions", "ApiServer", "ClusterInfo", "NodeBackend", "make_app", "start_api", "tls_context"]
