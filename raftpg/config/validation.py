"""The validation kit: read a parsed YAML mapping section by section into typed values, collecting
every problem (each message starts with its key path) so an operator fixes a file in one pass."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from raftpg.config.values import Address, ConfigError

_PARAM_RE = re.compile(r"[a-z_][a-z0-9_.]*")

_T = TypeVar("_T")


class Invalid(Exception):
    """A required value is missing or bad; its problem is already in the report."""


def need(value: _T | None) -> _T:
    if value is None:
        raise Invalid
    return value


def type_name(value: object) -> str:
    names = {dict: "mapping", list: "list", str: "string", int: "integer", float: "number", bool: "boolean"}
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    return names.get(type(value), type(value).__name__)


class Report:
    """Problems and warnings found so far; `origins` tells which key came from which env var."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.origins: dict[str, str] = {}

    def add(self, key: str, message: str) -> None:
        self.add_line(key or "configuration", f"{key or 'configuration'}: {message}")

    def add_line(self, key: str, line: str) -> None:
        """Record a finished message about `key`, naming the environment variable that set it."""
        origin = self.origins.get(key) or self.origins.get(key.split("[")[0])
        self.problems.append(f"{line} (set by environment variable {origin})" if origin else line)

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{key}: {message}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Section:
    """One mapping of the input: reports unknown keys at once, then reads typed values by name."""

    def __init__(
        self,
        report: Report,
        path: str,
        value: object,
        known: Iterable[str],
        hints: Mapping[str, str] | None = None,
    ) -> None:
        self.report = report
        self.path = path
        self.data: Mapping[Any, Any] = {}
        if isinstance(value, Mapping):
            self.data = value
        elif value is not None:
            report.add(path, f"must be a mapping, got {type_name(value)}")
        known = tuple(known)
        for key in self.data:
            if not isinstance(key, str):
                report.add(path, f"key {key!r} is not a string")
            elif key not in known:
                report.add(self.key(key), _unknown_key_message(key, known, hints or {}))

    def key(self, name: str) -> str:
        return join_key(self.path, name)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def problem(self, name: str, message: str) -> None:
        self.report.add(self.key(name), message)

    def section(self, name: str, known: Iterable[str], hints: Mapping[str, str] | None = None) -> Section:
        return Section(self.report, self.key(name), self.raw(name), known, hints)

    def get_str(self, name: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.problem(name, "required setting is missing")
            return default
        if not isinstance(value, str):
            self.problem(name, f"must be a string, got {type_name(value)}")
            return None if required else default
        if required and not value.strip():
            self.problem(name, "must not be empty")
            return None
        return value

    def get_choice(self, name: str, choices: Sequence[str], default: str) -> str:
        value = self.get_str(name, default=default)
        if value is None or value.lower() not in choices:
            if value is not None:
                self.problem(name, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value.lower()

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(name, f"must be true or false, got {type_name(value)} {value!r}")
            return default
        return value

    def get_int(self, name: str, default: int, minimum: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(name, f"must be an integer, got {type_name(value)} {value!r}")
            return default
        if value < minimum:
            self.problem(name, f"must be at least {minimum}, got {value}")
            return default
        return value

    def get_float(self, name: str, default: float, minimum: float, *, exclusive: bool = False) -> float:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(name, f"must be a number, got {type_name(value)} {value!r}")
            return default
        if not math.isfinite(value):
            self.problem(name, f"must be a finite number, got {value}")
            return default
        if value < minimum or (exclusive and value == minimum):
            relation = "greater than" if exclusive else "at least"
            self.problem(name, f"must be {relation} {minimum:g}, got {value:g}")
            return default
        return float(value)

    def get_path(self, name: str, *, required: bool = False, absolute: bool = False) -> Path | None:
        text = self.get_str(name, required=required)
        if text is None or not text.strip():  # required ones were reported by get_str
            return None
        path = Path(text).expanduser()
        if absolute and not path.is_absolute():
            self.problem(name, f"must be an absolute path, got {text!r}")
            return None
        return path

    def get_address(self, name: str, *, required: bool = False, connectable: bool = False) -> Address | None:
        text = self.get_str(name, required=required)
        return None if text is None else parse_address(self.report, self.key(name), text, connectable)

    def get_str_list(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(name, f"must be a list, got {type_name(value)}")
            return ()
        items: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.report.add(f"{self.key(name)}[{index}]", f"must be a non-empty string, got {item!r}")
            else:
                items.append(item)
        return tuple(items)


def _unknown_key_message(key: str, known: Sequence[str], hints: Mapping[str, str]) -> str:
    if key in hints:
        return f"unknown key: {hints[key]}"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key, did you mean '{close[0]}'?"
    return f"unknown key (known keys: {', '.join(sorted(known))})"


def parse_address(report: Report, key: str, text: str, connectable: bool) -> Address | None:
    try:
        address = Address.parse(text, key)
    except ValueError as exc:
        report.add_line(key, str(exc))
        return None
    if connectable and address.is_wildcard:
        report.add(key, f"must be an address other members can connect to, not {address.host}")
        return None
    return address


def _parameter_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def parse_parameters(
    report: Report, path: str, value: object, refused: Mapping[str, str]
) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        report.add(path, f"must be a mapping, got {type_name(value)}")
        return {}
    result: dict[str, str] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not _PARAM_RE.fullmatch(name.lower()):
            report.add(path, f"{name!r} is not a valid PostgreSQL parameter name")
            continue
        key, lowered = join_key(path, name), name.lower()
        if lowered in refused:
            report.add(key, refused[lowered])
            continue
        text = _parameter_value(raw)
        if text is None:
            report.add(key, f"must be a string, number or boolean, got {type_name(raw)}")
            continue
        result[lowered] = text
    return result
