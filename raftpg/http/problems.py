"""Why a peer could not be asked, and which of those reasons an operator must hear about.

A peer that is down is normal during a failover and stays at DEBUG. A peer that answers but
cannot be talked to — a certificate not signed by our CA, our client certificate refused, a
401 — never heals by itself and silently disables the leader race, so it is logged at WARNING
(at most once a minute per peer and reason) and kept for /patroni and `ctl list`.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

logger = logging.getLogger(__name__)

WARNING_INTERVAL = 60.0


class FailureKind(enum.Enum):
    TLS = "TLS"
    AUTH = "authentication"
    UNREACHABLE = "unreachable"

    @property
    def needs_operator(self) -> bool:
        """TLS and authentication failures persist until someone fixes a file or a password."""
        return self is not FailureKind.UNREACHABLE


@dataclass(frozen=True)
class PeerProblem:
    kind: FailureKind
    reason: str
    since: float  # Unix time of the first failure with this reason

    @property
    def text(self) -> str:
        return f"{self.kind.value}: {self.reason}"


class ProblemBook:
    """The current operator-relevant problem per peer, with rate-limited WARNINGs."""

    def __init__(self, interval: float = WARNING_INTERVAL, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._interval = interval
        self._clock = clock
        self._wall_clock = wall_clock
        self._problems: dict[str, PeerProblem] = {}
        self._warned: dict[tuple[str, FailureKind, str], float] = {}

    def failed(self, peer: str, url: str, kind: FailureKind, reason: str) -> None:
        if not kind.needs_operator:
            logger.debug("peer %s unreachable at %s: %s", peer, url, reason)
            return
        current = self._problems.get(peer)
        if current is None or (current.kind, current.reason) != (kind, reason):
            self._problems[peer] = PeerProblem(kind, reason, self._wall_clock())
        key = (peer, kind, reason)
        now = self._clock()
        last = self._warned.get(key)
        if last is None or now - last >= self._interval:
            self._warned[key] = now
            logger.warning("cannot talk to peer %s at %s: %s: %s (%s; repeated at most every %.0fs)",
                           peer, url, kind.value, reason, _hint(kind), self._interval)

    def succeeded(self, peer: str) -> None:
        previous = self._problems.pop(peer, None)
        if previous is not None:
            logger.info("peer %s answers again (was %s)", peer, previous.text)
            self._warned = {k: v for k, v in self._warned.items() if k[0] != peer}

    def problems(self) -> Mapping[str, PeerProblem]:
        return MappingProxyType(dict(self._problems))


def _hint(kind: FailureKind) -> str:
    if kind is FailureKind.TLS:
        return "check restapi.cafile, certfile and keyfile on both members"
    return "check restapi.authentication on both members"
