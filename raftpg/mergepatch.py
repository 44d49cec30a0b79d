"""JSON merge patch (RFC 7396), the one implementation: the REST API applies a patch to the
dynamic configuration, `raftpg ctl edit-config` computes the patch from what the operator edited."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def thaw(value: Any) -> Any:
    """Plain dicts and lists all the way down (the replicated state may hand out read-only views)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value


def apply_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Objects merge key by key, null deletes the key, anything else replaces (as Patroni's PATCH)."""
    result: dict[str, Any] = thaw(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            base = result.get(key)
            result[key] = apply_patch(base if isinstance(base, Mapping) else {}, value)
        else:
            result[key] = thaw(value)
    return result


def make_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The smallest merge patch turning `old` into `new` ({} when they are equal)."""
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if key in old and before == value:
            continue
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = make_patch(before, value)
        else:
            patch[key] = thaw(value)
    return patch
