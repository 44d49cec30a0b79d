"""Pure edits of the dynamic configuration for `raftpg ctl edit-config`.

Every way of editing (--set, --pg, --apply, $EDITOR) produces a new whole configuration; the
change sent to the API is the JSON merge patch (RFC 7396) from the version read to the new
one, so the API validates exactly what the operator saw in the diff.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from raftpg.cli.ctl.client import UsageError


def parse_assignment(text: str, prefix: tuple[str, ...] = ()) -> tuple[tuple[str, ...], Any]:
    """"a.b=value" -> (("a", "b"), parsed YAML value); `null` (or nothing) means delete."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"{text!r}: expected key=value")
    path = prefix + tuple(key.split("."))
    if any(not part for part in path):
        raise UsageError(f"{text!r}: empty component in the dotted key {key!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise UsageError(f"{text!r}: the value is not valid YAML: {exc}") from None
    return path, value


def set_path(config: Mapping[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `config` with the value at `path` replaced (None deletes it)."""
    result = copy.deepcopy(dict(config))
    node: dict[str, Any] = result
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            if value is None:
                return result
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise UsageError(f"cannot set {'.'.join(path)}: {where} is {child!r}, not a mapping")
        node = child
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return result


def load_mapping(text: str, source: str) -> dict[str, Any]:
    """A YAML (or JSON) document that must be a mapping; an empty document is {}."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{source}: the configuration must be a mapping, got {type(data).__name__}")
    return data
