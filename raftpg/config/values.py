"""The small value types settings are made of (addresses, credentials) and the error that
carries every configuration problem found."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*"})


class ConfigError(Exception):
    """Invalid configuration. Carries every problem found, not just the first."""

    problems: tuple[str, ...]

    def __init__(self, problems: Iterable[str], source: Path | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f" in {source}" if source is not None else ""
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid configuration{where}:\n{lines}")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        """True for "listen on every interface", which nobody can connect to."""
        return self.host in _WILDCARD_HOSTS

    @property
    def is_loopback(self) -> bool:
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def same_endpoint(self, other: Address) -> bool:
        return self.host.lower() == other.host.lower() and self.port == other.port

    @classmethod
    def parse(cls, text: str, key: str = "address") -> Address:
        """Parse "host:port" or "[ipv6]:port"; ValueError names `key` and says what is wrong."""
        text = text.strip()
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ValueError(f"{key}: {text!r} is not of the form [ipv6]:port")
            host, port_text = text[1:end], text[end + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{key}: {host!r} in brackets is not an IPv6 address") from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError(f"{key}: {text!r} has no port; expected host:port")
            if ":" in host:
                raise ValueError(f"{key}: write an IPv6 address in brackets, e.g. [::1]:5432 (got {text!r})")
        if not host:
            raise ValueError(f"{key}: host is empty in {text!r}")
        if any(ch.isspace() or ch in ",/@[]" for ch in host):
            raise ValueError(f"{key}: {host!r} is not a valid host name or address")
        if not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"{key}: port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"{key}: port {port} is out of range 1-65535")
        return cls(host, port)


@dataclass(frozen=True)
class Auth:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Auth(username={self.username!r}, password=***)"


