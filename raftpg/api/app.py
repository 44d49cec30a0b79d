"""The aiohttp application: routes, authentication, error handling and the request handlers.

Health checks answer from the status the HA loop cached (no awaits); actions are validated in
full before the backend is asked for anything, so a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from raftpg.api.backend import ClusterInfo, NodeBackend
from raftpg.api.bodies import ApiError, check_keys, get_bool, get_str, parse_schedule, read_object
from raftpg.api.config_edit import etag, parse_if_match
from raftpg.api.documents import cluster_document, history_document, node_document, raft_document
from raftpg.api.health import HEALTH_CHECKS, Probe
from raftpg.api.metrics import CONTENT_TYPE, render_metrics
from raftpg.api.operations import add_routes as add_operation_routes
from raftpg.api.switchover import plan
from raftpg.config import Address, ConfigError, DynamicConfig, validate_dynamic_config
from raftpg.consensus.errors import ConsensusError
from raftpg.consensus.model import RaftStatus
from raftpg.ha.memory import PgState
from raftpg.mergepatch import apply_patch

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_VERSION_RE = re.compile(r"\d+(\.\d+){0,2}")
OPERATIONS_IN_PROGRESS = frozenset(
    {PgState.STARTING, PgState.STOPPING, PgState.REWINDING, PgState.CREATING_REPLICA, PgState.INITIALIZING}
)
"""Member states in which POST /reinitialize without `force` is refused, as Patroni refuses it while
an operation runs; with `force` it is carried out as soon as the HA loop finishes that step."""


@dataclass(frozen=True)
class ApiOptions:
    action_timeout: float | None = None
    """How long POST /switchover and /failover wait for the lease to move; None: ttl + 10 s."""
    poll_interval: float = 0.1
    body_timeout: float = 10.0
    """Seconds a request body may take to arrive (the guard's deadlines stop once a handler runs)."""
    wall_clock: Callable[[], float] = field(default=time.time)
    """Unix time, for scheduled actions and timestamps users see (leases never use it)."""
    started_at: float | None = None
    """Unix time this raftpg process started, published as raftpg.started_at: how `ctl
    rolling-restart --daemon` sees that the process was replaced."""
    restart_daemon: Callable[[], None] | None = None
    """Makes this raftpg process exit with EX_TEMPFAIL for its supervisor to start it again
    (POST /restart {"daemon": true}); None where nothing would start it again."""


def json_error(status: int, message: str, **details: Any) -> web.Response:
    return web.json_response({"error": message, **details}, status=status)


def make_app(backend: NodeBackend, options: ApiOptions | None = None,
             outer: Sequence[Middleware] = ()) -> web.Application:
    """`outer` middlewares run first, around error handling and authentication."""
    handlers = _Handlers(backend, options or ApiOptions())
    app = web.Application(middlewares=[*outer, _errors, handlers.authenticate])
    router = app.router
    for path, check in HEALTH_CHECKS.items():
        health = handlers.health(check)
        router.add_get(path, health)
        router.add_route("OPTIONS", path, health)
    router.add_get("/patroni", handlers.get_patroni)
    router.add_get("/cluster", handlers.get_cluster)
    router.add_get("/history", handlers.get_history)
    router.add_get("/config", handlers.get_config)
    router.add_patch("/config", handlers.patch_config)
    router.add_put("/config", handlers.put_config)
    router.add_get("/metrics", handlers.get_metrics)
    router.add_post("/switchover", handlers.post_switchover)
    router.add_delete("/switchover", handlers.delete_switchover)
    router.add_post("/failover", handlers.post_failover)
    router.add_post("/restart", handlers.post_restart)
    router.add_delete("/restart", handlers.delete_restart)
    router.add_post("/reload", handlers.post_reload)
    router.add_post("/reinitialize", handlers.post_reinitialize)
    router.add_get("/raft", handlers.get_raft)
    router.add_post("/raft/members", handlers.post_raft_member)
    router.add_delete("/raft/members/{addr}", handlers.delete_raft_member)
    add_operation_routes(router, backend, handlers.options.body_timeout)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error; nothing escapes as an HTML page or a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except ConsensusError as exc:
        logger.warning("%s %s: the cluster state could not be changed: %s", request.method, request.path, exc)
        return json_error(503, f"the cluster state could not be changed: {exc}")
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return json_error(500, "internal error; see the raftpg log")


class _Handlers:
    def __init__(self, backend: NodeBackend, options: ApiOptions) -> None:
        self.backend = backend
        self.options = options
        self._config_cache: tuple[int, DynamicConfig] | None = None

    # --- shared -----------------------------------------------------------------------------
    def config(self, cluster: ClusterInfo) -> DynamicConfig:
        """The dynamic configuration in force, parsed once per version."""
        cached = self._config_cache
        if cached is not None and cached[0] == cluster.config_version:
            return cached[1]
        config = self.backend.settings.bootstrap.dcs
        if cluster.config:
            try:
                config = validate_dynamic_config(cluster.config)[0]
            except ConfigError as exc:
                logger.error("dynamic configuration version %d is invalid (%s); using the bootstrap one",
                             cluster.config_version, "; ".join(exc.problems))
        self._config_cache = (cluster.config_version, config)
        return config

    async def body(self, request: web.Request, *, optional: bool = False) -> dict[str, Any]:
        return await read_object(request, self.options.body_timeout, optional=optional)

    def raft_status(self) -> RaftStatus | None:
        """None if the replica cannot say: /patroni must still answer (peers read it in a race)."""
        try:
            return self.backend.raft_status()
        except Exception as exc:
            logger.warning("Raft status unavailable: %s", exc)
            return None

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """HTTP Basic on unsafe methods when restapi.authentication is set (as Patroni)."""
        auth = self.backend.settings.restapi.authentication
        if auth is None or request.method not in UNSAFE_METHODS:
            return await handler(request)
        if _credentials_match(request.headers.get("Authorization"), auth.username, auth.password):
            return await handler(request)
        logger.warning("refused unauthenticated %s %s from %s", request.method, request.path, request.remote)
        response = json_error(401, "authentication required")
        response.headers["WWW-Authenticate"] = 'Basic realm="raftpg"'
        return response

    # --- health and status ----------------------------------------------------------------------
    def health(self, check: Callable[[Probe], bool]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            cluster = self.backend.cluster()
            probe = Probe(self.backend.status(), cluster, self.config(cluster), self.backend.now(), request.query)
            code = 200 if check(probe) else 503
            if request.method != "GET":
                return web.Response(status=code)
            document = node_document(probe.status, probe.now, self.options.wall_clock(), None)
            return web.json_response(document, status=code)

        return handler

    async def get_patroni(self, request: web.Request) -> web.StreamResponse:
        document = node_document(self.backend.status(), self.backend.now(), self.options.wall_clock(),
                                 self.raft_status(), self.backend.peer_problems())
        if self.options.started_at is not None:
            document["raftpg"]["started_at"] = self.options.started_at
        return web.json_response(document)

    async def get_cluster(self, request: web.Request) -> web.StreamResponse:
        cluster = self.backend.cluster()
        return web.json_response(cluster_document(cluster, self.config(cluster).synchronous_mode))

    async def get_history(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(history_document(self.backend.cluster()))

    async def get_metrics(self, request: web.Request) -> web.StreamResponse:
        raft = self.backend.raft_status()
        text = render_metrics(self.backend.status(), self.backend.cluster(), raft, self.backend.now(),
                              self.options.wall_clock(), self.backend.peer_problems())
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def get_raft(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(raft_document(self.backend.raft_status()))

    # --- dynamic configuration ----------------------------------------------------------------
    async def get_config(self, request: web.Request) -> web.StreamResponse:
        cluster = self.backend.cluster()
        config = dict(cluster.config) or self.backend.settings.bootstrap.dcs.to_dict()
        return web.json_response(config, headers={"ETag": etag(cluster.config_version)})

    async def patch_config(self, request: web.Request) -> web.StreamResponse:
        patch = await self.body(request)
        cluster = self.backend.cluster()
        wanted = self._check_if_match(request, cluster)
        base = cluster.config or self.backend.settings.bootstrap.dcs.to_dict()
        return await self._store_config(apply_patch(base, patch), cluster, wanted)

    async def put_config(self, request: web.Request) -> web.StreamResponse:
        config = await self.body(request)
        cluster = self.backend.cluster()
        wanted = self._check_if_match(request, cluster)
        return await self._store_config(config, cluster, wanted)

    @staticmethod
    def _check_if_match(request: web.Request, cluster: ClusterInfo) -> int | None:
        wanted = parse_if_match(request.headers.get("If-Match"))
        if wanted is not None and wanted != cluster.config_version:
            raise ApiError(412, f"the configuration is at version {cluster.config_version}, not {wanted}",
                           config_version=cluster.config_version)
        return wanted

    async def _store_config(self, proposed: dict[str, Any], cluster: ClusterInfo,
                            wanted: int | None) -> web.StreamResponse:
        try:
            config, warnings = validate_dynamic_config(proposed)
        except ConfigError as exc:
            raise ApiError(400, "invalid dynamic configuration", problems=list(exc.problems)) from None
        stored = config.to_dict()
        if not await self.backend.set_config(stored, cluster.config_version):
            current = self.backend.cluster().config_version
            status = 412 if wanted is not None else 409
            raise ApiError(status, f"the configuration changed meanwhile (now version {current}); "
                                   "read it again and retry", config_version=current)
        version = self.backend.cluster().config_version
        logger.info("dynamic configuration changed from version %d to %d%s", cluster.config_version, version,
                    f" (ignored: {'; '.join(warnings)})" if warnings else "")
        return web.json_response({"config": stored, "config_version": version, "warnings": list(warnings)},
                                 headers={"ETag": etag(version)})

    # --- switchover and failover -----------------------------------------------------------------
    async def post_switchover(self, request: web.Request) -> web.StreamResponse:
        return await self._switch(request, "switchover")

    async def post_failover(self, request: web.Request) -> web.StreamResponse:
        return await self._switch(request, "failover")

    async def _switch(self, request: web.Request, action: str) -> web.StreamResponse:
        body = await self.body(request)
        cluster = self.backend.cluster()
        config = self.config(cluster)
        request_plan = plan(action, body, cluster, config, self.options.wall_clock())
        record = request_plan.record()
        if not await self.backend.set_failover(record):
            raise ApiError(503, f"the {request_plan.kind} request could not be stored in the cluster state")
        logger.info("%s requested over the REST API: %s", request_plan.kind, record)
        if request_plan.scheduled_at is not None:
            return web.json_response({"message": "Switchover scheduled", "request": record}, status=202)
        timeout = self.options.action_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (config.ttl + 10.0 if timeout is None else timeout)
        while True:
            current = self.backend.cluster()
            if request_plan.done(current):
                verb = "switched over" if request_plan.kind == "switchover" else "failed over"
                return web.json_response({"message": f'Successfully {verb} to "{current.lease_holder}"',
                                          "leader": current.lease_holder})
            dropped = current.failover_dropped
            if dropped is not None and dropped.get("request_id") == record["request_id"]:
                holder = current.lease_holder or "the leader"
                raise ApiError(412, f"{request_plan.kind.capitalize()} not carried out: {holder} dropped the "
                                    f"request: {dropped.get('reason') or 'no reason given'}", request=record)
            if loop.time() >= deadline:
                raise ApiError(503, f"{request_plan.kind.capitalize()} status unknown: the lease did not move "
                                    f"within the time allowed (holder: {current.lease_holder or 'nobody'})",
                               request=record)
            await asyncio.sleep(self.options.poll_interval)

    async def delete_switchover(self, request: web.Request) -> web.StreamResponse:
        pending = self.backend.cluster().failover
        if pending is None:
            # It may have been requested through another member a moment ago: read our own writes.
            await self.backend.catch_up()
            pending = self.backend.cluster().failover
        if pending is None:
            raise ApiError(404, "no switchover is scheduled")
        if not await self.backend.set_failover(None):
            raise ApiError(503, "the request could not be removed from the cluster state")
        logger.info("pending switchover/failover request removed over the REST API: %s", dict(pending))
        scheduled = pending.get("scheduled_at") is not None
        return web.json_response({"message": "scheduled switchover deleted" if scheduled
                                  else "pending switchover/failover request deleted"})

    # --- node actions -----------------------------------------------------------------------------
    async def post_restart(self, request: web.Request) -> web.StreamResponse:
        body = await self.body(request, optional=True)
        check_keys(body, ("restart_pending", "role", "postgres_version", "schedule", "daemon"))
        if get_bool(body, "daemon"):
            return self.restart_daemon(body)
        role = get_str(body, "role")
        role = "primary" if role == "master" else role
        if role == "any":
            role = None
        if role not in (None, "primary", "replica"):
            raise ApiError(400, f"role must be primary, replica or any, got {role!r}")
        version = get_str(body, "postgres_version")
        if version is not None and not _VERSION_RE.fullmatch(version):
            raise ApiError(400, f"postgres_version must look like 15 or 15.4, got {version!r}")
        schedule = get_str(body, "schedule")
        scheduled_at = None if schedule is None else parse_schedule(schedule, "schedule", self.options.wall_clock())
        restart_pending = get_bool(body, "restart_pending")
        try:
            message = await self.backend.request_restart(scheduled_at=scheduled_at, role=role,
                                                         postgres_version=version, restart_pending=restart_pending)
        except ValueError as exc:
            raise ApiError(503, str(exc)) from None
        logger.info("restart requested over the REST API: %s", message)
        return web.json_response({"message": message}, status=202 if scheduled_at is not None else 200)

    def restart_daemon(self, body: Mapping[str, Any]) -> web.StreamResponse:
        """Replace this raftpg process (a new binary on disk takes over). Only while paused: then
        the stopping process leaves PostgreSQL running and the lease as it is, and the new one
        reclaims it; unpaused it would hand over and stop PostgreSQL."""
        if len(body) > 1:
            raise ApiError(400, "daemon restarts the raftpg process only; it takes no other keys")
        if self.options.restart_daemon is None:
            raise ApiError(503, "this raftpg process cannot restart itself (no supervisor)")
        if not self.backend.status().paused:
            raise ApiError(503, "restarting raftpg needs a paused cluster (raftpg ctl pause), "
                                "or it would hand over and stop PostgreSQL")
        self.options.restart_daemon()
        logger.info("raftpg restart requested over the REST API: exiting for the supervisor to start us again")
        return web.json_response({"message": "raftpg restarting"}, status=202)

    async def delete_restart(self, request: web.Request) -> web.StreamResponse:
        if not await self.backend.cancel_restart():
            raise ApiError(404, "no restarts are scheduled")
        logger.info("scheduled restart deleted over the REST API")
        return web.json_response({"message": "scheduled restart deleted"})

    async def post_reload(self, request: web.Request) -> web.StreamResponse:
        check_keys(await self.body(request, optional=True), ())
        try:
            message = await self.backend.request_reload()
        except ValueError as exc:
            raise ApiError(503, str(exc)) from None
        return web.json_response({"message": message}, status=202)

    async def post_reinitialize(self, request: web.Request) -> web.StreamResponse:
        body = await self.body(request, optional=True)
        check_keys(body, ("force",))
        state = self.backend.status().state
        if state in OPERATIONS_IN_PROGRESS and not get_bool(body, "force"):
            raise ApiError(503, f"{state} already in progress; reinitialize with force=true to do it anyway")
        try:
            message = await self.backend.request_reinitialize()
        except ValueError as exc:
            raise ApiError(503, str(exc)) from None
        logger.info("reinitialize requested over the REST API: %s", message)
        return web.json_response({"message": message})

    # --- Raft membership ----------------------------------------------------------------------------
    async def post_raft_member(self, request: web.Request) -> web.StreamResponse:
        body = await self.body(request)
        check_keys(body, ("addr",))
        addr = _raft_addr(get_str(body, "addr"))
        try:
            await self.backend.add_raft_member(addr)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        logger.info("Raft member %s added over the REST API", addr)
        return web.json_response({"message": f"{addr} added to the Raft cluster"})

    async def delete_raft_member(self, request: web.Request) -> web.StreamResponse:
        addr = _raft_addr(request.match_info["addr"])
        try:
            await self.backend.remove_raft_member(addr)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        logger.info("Raft member %s removed over the REST API", addr)
        return web.json_response({"message": f"{addr} removed from the Raft cluster"})


def _raft_addr(text: str | None) -> str:
    if text is None:
        raise ApiError(400, "addr is required (host:port of the member's Raft replica)")
    try:
        return str(Address.parse(text, "addr"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _credentials_match(header: str | None, username: str, password: str) -> bool:
    """Constant-time comparison of both parts, so a timing probe learns nothing about either."""
    if header is None:
        return False
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, sep, secret = decoded.partition(b":")
    user_ok = hmac.compare_digest(user, username.encode())
    secret_ok = hmac.compare_digest(secret, password.encode())
    return bool(sep) and user_ok and secret_ok
