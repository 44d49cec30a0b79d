"""The replicated state machine: pure functions over a plain dict.

Every replica applies the same commands in the same order, so each function's effect may depend
only on its arguments and the current state: no clock, no environment, no randomness. Times
users see (acquired_wall, history timestamps) are arguments chosen by the proposer.

The state holds JSON primitives only. pysyncobj pickles the journal and the full dump; a pickled
raftpg class would tie those files to module paths and make upgrades impossible.

A function never raises on bad input from the log: it rejects the command (returns False) before
touching the state. A raise on the apply path would stall the replica on that log entry.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any

SCHEMA = 1
HISTORY_LIMIT = 100

State = dict[str, Any]


def initial_state() -> State:
    return {
        "schema": SCHEMA,
        "cluster": {"scope": None, "schema": SCHEMA},
        "initialize": None,
        "lease": {
            "holder": None,
            "instance_id": None,
            "version": 0,
            "revision": 0,
            "ttl": 0.0,
            "lsn_at_handover": None,
            "bootstrapping": False,
            "request_id": None,
            "acquired_wall": None,
        },
        "members": {},
        "config": {},
        "config_version": 0,
        "failover": None,
        "failover_dropped": None,
        "sync": {"leader": None, "members": []},
        "history": [],
        "operations": {},
    }


def normalize(state: Any) -> State:
    """Fill keys a dump written by an older release lacks; a non-dict (corrupt dump) starts empty."""
    fresh = initial_state()
    if not isinstance(state, dict):
        return fresh
    for key, value in fresh.items():
        state.setdefault(key, value)
    for key in ("cluster", "lease"):
        if isinstance(state[key], dict):
            for sub, value in fresh[key].items():
                state[key].setdefault(sub, value)
        else:
            state[key] = fresh[key]
    return state


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_mapping(value: object) -> bool:
    """Arguments come from the log: the annotations say what a correct proposer sends."""
    return isinstance(value, Mapping)


def _is_ttl(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _holds(state: State, name: Any, instance_id: Any, version: Any) -> bool:
    """DESIGN rule 7: a holder-only command names the exact lease it was issued under."""
    lease = state["lease"]
    return (
        lease["holder"] is not None
        and lease["holder"] == name
        and lease["instance_id"] == instance_id
        and lease["version"] == version
    )


def _new_holder(state: State, holder: str | None, instance_id: str | None, request_id: Any,
                keep_owed_lsn: bool = False) -> None:
    lease = state["lease"]
    if not (keep_owed_lsn and holder is not None and holder == lease["holder"]):
        # A reclaim by the same member (its process restarted) still owes the hand-over LSN.
        lease["lsn_at_handover"] = None
    lease["holder"] = holder
    lease["instance_id"] = instance_id
    lease["version"] += 1
    lease["revision"] += 1
    lease["request_id"] = request_id
    lease["bootstrapping"] = False


def _reset_sync(state: State, leader: str) -> None:
    """What releases before 2 did on acquire and hand-over; kept for replaying their log entries."""
    state["sync"] = {"leader": leader, "members": []}


def _inherit_sync(state: State, leader: str) -> None:
    """DESIGN rule 5: the sync record survives a change of holder.

    It says where every commit acknowledged so far lies ("on `quorum` of `members`"), and that stays
    true whoever holds the lease next. Resetting it would let a member that lacks those commits
    promote if the new holder dies before its standbys caught up (chaos seed 200: a switchover
    target killed before it promoted). The new holder's own commits stay blocked until it has
    published its set, and it narrows this record only once the new members flushed past the
    switch (ha/sync.py)."""
    sync = state["sync"]
    state["sync"] = {**sync, "leader": leader} if isinstance(sync, dict) else {"leader": leader, "members": []}


def ensure_cluster(state: State, scope: str) -> bool:
    if not _is_str(scope):
        return False
    cluster = state["cluster"]
    if cluster["scope"] is None:
        cluster["scope"] = scope
        return True
    return bool(cluster["scope"] == scope)


def acquire_lease(
    state: State,
    name: str,
    instance_id: str,
    expected_version: int,
    expected_revision: int,
    ttl: float,
    bootstrapping: bool,
    request_id: str,
    wall_time: float,
    inherit: bool = False,
) -> bool:
    """Compare-and-set on (version, revision): a renewal the acquirer did not see makes it fail.

    `inherit` (what this release proposes; absent from entries older releases wrote, which replay
    as they applied then): the sync record and a hand-over LSN the same member still owes survive."""
    lease = state["lease"]
    if not (_is_str(name) and _is_str(instance_id) and _is_ttl(ttl)):
        return False
    if lease["version"] != expected_version or lease["revision"] != expected_revision:
        return False
    _new_holder(state, name, instance_id, request_id, keep_owed_lsn=bool(inherit))
    lease["ttl"] = float(ttl)
    lease["bootstrapping"] = bool(bootstrapping)
    lease["acquired_wall"] = wall_time
    (_inherit_sync if inherit else _reset_sync)(state, name)
    return True


def renew_lease(
    state: State,
    name: str,
    instance_id: str,
    version: int,
    ttl: float,
    request_id: str,
    bootstrapping: bool = False,
) -> bool:
    """Extend the holder's lease; the bootstrapping flag can be cleared here, never set."""
    if not _is_ttl(ttl) or not _holds(state, name, instance_id, version):
        return False
    lease = state["lease"]
    lease["revision"] += 1
    lease["ttl"] = float(ttl)
    lease["request_id"] = request_id
    lease["bootstrapping"] = bool(lease["bootstrapping"] and bootstrapping)
    return True


def release_lease(
    state: State, name: str, instance_id: str, version: int, request_id: str | None = None
) -> bool:
    if not _holds(state, name, instance_id, version):
        return False
    _new_holder(state, None, None, request_id)
    return True


def handover_lease(
    state: State,
    name: str,
    instance_id: str,
    version: int,
    to_name: str,
    to_instance_id: str,
    lsn: int | None,
    request_id: str,
    both_hold_all: bool = False,
) -> bool:
    """DESIGN rule 4: the old primary hands over with its shutdown checkpoint LSN recorded.

    It stopped cleanly and the target has received everything up to that checkpoint, so every
    commit acknowledged so far is on both of them: with `both_hold_all` (what this release
    proposes) the sync record says exactly that (rule 5). If the target dies before it promotes,
    the old primary may take over, and a member that may lack those commits may not. Entries older
    releases wrote lack the flag and replay as they applied then."""
    if not (_is_str(to_name) and _is_str(to_instance_id)):
        return False
    if lsn is not None and not _is_int(lsn):
        return False
    if not _holds(state, name, instance_id, version):
        return False
    _new_holder(state, to_name, to_instance_id, request_id)
    state["lease"]["lsn_at_handover"] = lsn
    if not both_hold_all:
        _reset_sync(state, to_name)
    elif lsn is None:
        _inherit_sync(state, to_name)
    else:
        state["sync"] = {"leader": to_name, "members": sorted({name, to_name}), "quorum": 2}
    return True


def publish_member(state: State, name: str, record: Mapping[str, Any]) -> bool:
    if not _is_str(name) or not _is_mapping(record):
        return False
    state["members"][name] = copy.deepcopy(dict(record))
    return True


def remove_member(state: State, name: str) -> bool:
    return _is_str(name) and state["members"].pop(name, None) is not None


def set_config(state: State, config: Mapping[str, Any], expected_version: int | None) -> bool:
    """Replace the dynamic config; with expected_version set, only if nobody edited it since."""
    if not _is_mapping(config):
        return False
    if expected_version is not None and state["config_version"] != expected_version:
        return False
    state["config"] = copy.deepcopy(dict(config))
    state["config_version"] += 1
    return True


def initialize(state: State, name: str, instance_id: str, version: int, sysid: str) -> bool:
    """Record the cluster's system identifier once; a retry with the same identifier succeeds."""
    if not _is_str(sysid) or not _holds(state, name, instance_id, version):
        return False
    if state["initialize"] is None:
        state["initialize"] = sysid
        return True
    return bool(state["initialize"] == sysid)


def set_sync(
    state: State, name: str, instance_id: str, version: int, sync: Mapping[str, Any]
) -> bool:
    if not _is_mapping(sync) or not _holds(state, name, instance_id, version):
        return False
    members = sync.get("members", [])
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        return False
    new_sync = copy.deepcopy(dict(sync))
    new_sync.setdefault("leader", name)
    new_sync["members"] = list(members)
    state["sync"] = new_sync
    return True


def append_history(
    state: State, name: str, instance_id: str, version: int, entry: Mapping[str, Any]
) -> bool:
    """Append once per request_id (a retried command does not append twice); keep the last N."""
    if not _is_mapping(entry) or not _is_str(entry.get("request_id")):
        return False
    if not _holds(state, name, instance_id, version):
        return False
    history = state["history"]
    if any(old.get("request_id") == entry["request_id"] for old in history):
        return True
    history.append(copy.deepcopy(dict(entry)))
    del history[:-HISTORY_LIMIT]
    return True


def set_failover(
    state: State, request: Mapping[str, Any] | None, expected_request_id: str | None = None
) -> bool:
    """Set (or with None, drop) the pending failover request; optionally only if it is still X."""
    if request is not None and (not _is_mapping(request) or not _is_str(request.get("request_id"))):
        return False
    if expected_request_id is not None:
        current = state["failover"]
        if current is None or current.get("request_id") != expected_request_id:
            return False
    state["failover"] = None if request is None else copy.deepcopy(dict(request))
    return True


def clear_failover(state: State, request_id: str, reason: str | None = None) -> bool:
    """Drop the request only if it is still that one, so a late command cannot drop a newer one.
    A reason means it was not carried out: it stays (until the next such drop) for whoever waits
    on the request to report."""
    current = state["failover"]
    if current is None or current.get("request_id") != request_id:
        return False
    if reason is not None and not _is_str(reason):
        return False
    state["failover"] = None
    if reason is not None:
        state["failover_dropped"] = {"request_id": request_id, "reason": reason}
    return True


def set_operation(state: State, name: str, record: Mapping[str, Any] | None, expected_revision: int) -> bool:
    """Progress of a long operator operation (a rolling restart), so that any member's API can show
    it and `ctl` can resume it from any host: compare-and-set on the revision, None ends it."""
    if not _is_str(name) or not _is_int(expected_revision) or not (record is None or _is_mapping(record)):
        return False
    operations = state["operations"] if isinstance(state["operations"], dict) else {}
    current = operations.get(name) or {"revision": 0}
    if current.get("revision") != expected_revision:
        return False
    operations[name] = {"revision": expected_revision + 1,
                        "record": None if record is None else copy.deepcopy(dict(record))}
    state["operations"] = operations
    return True


def noop(state: State, request_id: str) -> bool:
    """A barrier: committing it proves the proposer's replica has caught up to that point."""
    return True


OPERATIONS: dict[str, Callable[..., bool]] = {
    "ensure_cluster": ensure_cluster,
    "acquire_lease": acquire_lease,
    "renew_lease": renew_lease,
    "release_lease": release_lease,
    "handover_lease": handover_lease,
    "publish_member": publish_member,
    "remove_member": remove_member,
    "set_config": set_config,
    "initialize": initialize,
    "set_sync": set_sync,
    "append_history": append_history,
    "set_failover": set_failover,
    "clear_failover": clear_failover,
    "set_operation": set_operation,
    "noop": noop,
}


_SIGNATURES = {op: inspect.signature(func) for op, func in OPERATIONS.items()}


def make_command(op: str, **args: Any) -> dict[str, Any]:
    """The log entry format: {"op": name, "args": {...}} -- primitives only, stable across releases."""
    if op not in OPERATIONS:
        raise ValueError(f"unknown consensus operation {op!r}")
    return {"op": op, "args": args}


def apply_command(state: State, command: Any) -> bool:
    """Dispatch one log entry. Unknown operations and malformed arguments are rejected alike on
    every replica (a newer release's command on an older replica is refused, not half-applied).
    Argument values are validated by each operation before it mutates anything."""
    if not isinstance(command, Mapping):
        return False
    func = OPERATIONS.get(command.get("op"))  # type: ignore[arg-type]
    args = command.get("args")
    if func is None or not isinstance(args, Mapping):
        return False
    try:
        _SIGNATURES[command["op"]].bind(state, **args)
    except TypeError:
        return False
    return bool(func(state, **args))
