"""The signal numbers and handlers the fence uses, from `_signal`, the C module behind `signal`.

`signal` wraps every number in an IntEnum, and importing enum costs the fence about 0.3 MiB of
its 10 MiB (README "Footprint"). The daemon imports kill.py too and gets the same plain ints.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # CPython's own module; typeshed has no stub for it

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

SIGHUP: int = _signal.SIGHUP
SIGINT: int = _signal.SIGINT
SIGTERM: int = _signal.SIGTERM
SIGQUIT: int = _signal.SIGQUIT
SIGKILL: int = _signal.SIGKILL
SIGSTOP: int = _signal.SIGSTOP


def ignore(signum: int) -> None:
    _signal.signal(signum, _signal.SIG_IGN)


def handle(signum: int, handler: Callable[[int, FrameType | None], None]) -> None:
    _signal.signal(signum, handler)
