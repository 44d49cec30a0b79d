"""Deciding from the replica's state whether a command whose reply was lost took effect.

A leader change, a discarded entry or a timeout leaves a command's outcome unknown: it may have
committed, may still commit, or may be gone. Each resolver looks at a state and answers True
(it took effect), False (it did not and never can: the condition it depends on is gone for good,
because versions and revisions only grow) or None (cannot tell yet).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from raftpg.consensus import state as st

Resolver = Callable[[Mapping[str, Any]], bool | None]


def _holds(state: Mapping[str, Any], args: Mapping[str, Any]) -> bool:
    lease = state["lease"]
    return bool(
        lease["holder"] is not None
        and lease["holder"] == args["name"]
        and lease["instance_id"] == args["instance_id"]
        and lease["version"] == args["version"]
    )


def _lost(state: Mapping[str, Any], args: Mapping[str, Any]) -> bool:
    """The lease the command names is gone for good. A replica that has not applied that lease
    yet (an older version) cannot tell: it may still be behind, not past it."""
    return state["lease"]["version"] >= args["version"] and not _holds(state, args)


def _acquire(args: Mapping[str, Any]) -> Resolver:
    def resolve(state: Mapping[str, Any]) -> bool | None:
        lease = state["lease"]
        if lease["request_id"] == args["request_id"]:
            return True
        # Ours through an earlier attempt is not this attempt: crediting it would date our deadline
        # from this later send while followers count from the earlier commit.
        if lease["version"] != args["expected_version"] or lease["revision"] != args["expected_revision"]:
            return False
        return None

    return resolve


def _holder_change(args: Mapping[str, Any]) -> Resolver:
    """renew, release, handover: our request id in the lease, or the lease we named is gone.
    A replica that has not applied that lease yet (older version) can tell nothing."""

    def resolve(state: Mapping[str, Any]) -> bool | None:
        if state["lease"]["request_id"] == args["request_id"]:
            return True
        if _lost(state, args):
            return False
        return None

    return resolve


def _idempotent(op: str, args: Mapping[str, Any]) -> Resolver:
    """Replaying the command on the state changes nothing: its effect is already there.
    A holder-conditioned command the state now rejects can never apply any more."""

    def resolve(state: Mapping[str, Any]) -> bool | None:
        trial = copy.deepcopy(dict(state))
        if not st.apply_command(trial, {"op": op, "args": args}):
            return False if op == "set_sync" else None
        return True if trial == state else None

    return resolve


def _initialize(args: Mapping[str, Any]) -> Resolver:
    def resolve(state: Mapping[str, Any]) -> bool | None:
        if state["initialize"] is not None:
            return bool(state["initialize"] == args["sysid"])
        if _lost(state, args):
            return False
        return None

    return resolve


def _set_config(args: Mapping[str, Any]) -> Resolver:
    def resolve(state: Mapping[str, Any]) -> bool | None:
        same = state["config"] == args["config"]
        expected = args["expected_version"]
        if expected is None:
            return True if same else None
        if state["config_version"] > expected:
            return bool(same)
        return None

    return resolve


def _set_operation(args: Mapping[str, Any]) -> Resolver:
    def resolve(state: Mapping[str, Any]) -> bool | None:
        current = (state.get("operations") or {}).get(args["name"]) or {"revision": 0}
        if current["revision"] > args["expected_revision"]:
            return bool(current["revision"] == args["expected_revision"] + 1 and current["record"] == args["record"])
        return None

    return resolve


def _append_history(args: Mapping[str, Any]) -> Resolver:
    def resolve(state: Mapping[str, Any]) -> bool | None:
        request_id = args["entry"]["request_id"]
        if any(entry.get("request_id") == request_id for entry in state["history"]):
            return True
        if _lost(state, args):
            return False
        return None

    return resolve


def _set_failover(args: Mapping[str, Any]) -> Resolver:
    def resolve(state: Mapping[str, Any]) -> bool | None:
        current = state["failover"]
        request = args["request"]
        if request is None:
            return True if current is None else None
        if current is not None and current.get("request_id") == request["request_id"]:
            return True
        expected = args.get("expected_request_id")
        if expected is not None and (current is None or current.get("request_id") != expected):
            return False
        return None

    return resolve


def _clear_failover(args: Mapping[str, Any]) -> Resolver:
    """The request is no longer pending, whoever removed it: that is what the caller wanted."""

    def resolve(state: Mapping[str, Any]) -> bool | None:
        current = state["failover"]
        if current is None or current.get("request_id") != args["request_id"]:
            return True
        return None

    return resolve


def _remove_member(args: Mapping[str, Any]) -> Resolver:
    def resolve(state: Mapping[str, Any]) -> bool | None:
        return True if args["name"] not in state["members"] else None

    return resolve


def _ensure_cluster(args: Mapping[str, Any]) -> Resolver:
    def resolve(state: Mapping[str, Any]) -> bool | None:
        scope = state["cluster"]["scope"]
        if scope is None:
            return None
        return bool(scope == args["scope"])

    return resolve


def _undecidable(args: Mapping[str, Any]) -> Resolver:
    def resolve(state: Mapping[str, Any]) -> bool | None:
        return None

    return resolve


def resolver_for(command: Mapping[str, Any]) -> Resolver:
    op = command["op"]
    args = command["args"]
    if op == "acquire_lease":
        return _acquire(args)
    if op in ("renew_lease", "release_lease", "handover_lease"):
        return _holder_change(args)
    if op in ("publish_member", "set_sync"):
        return _idempotent(op, args)
    if op == "initialize":
        return _initialize(args)
    if op == "set_config":
        return _set_config(args)
    if op == "append_history":
        return _append_history(args)
    if op == "set_operation":
        return _set_operation(args)
    if op == "set_failover":
        return _set_failover(args)
    if op == "clear_failover":
        return _clear_failover(args)
    if op == "remove_member":
        return _remove_member(args)
    if op == "ensure_cluster":
        return _ensure_cluster(args)
    return _undecidable(args)
