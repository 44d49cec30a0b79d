"""systemd's notify protocol (Type=notify) with the standard library only.

systemd passes a datagram socket in $NOTIFY_SOCKET; a service tells it "READY=1" when it is up
and "STOPPING=1" when it begins to stop. Without the variable (not under systemd) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


def notify_address(env: Mapping[str, str]) -> str | None:
    """The socket path from $NOTIFY_SOCKET; a leading '@' means Linux's abstract namespace."""
    path = env.get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return None
    return "\0" + path[1:] if path.startswith("@") else path


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one notification; True when it was sent. Failures are logged, never raised: the
    daemon works the same without a supervisor listening."""
    address = notify_address(os.environ if env is None else env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # never stall the event loop; a full queue is a logged failure
            sock.sendto(message.encode(), address)
    except OSError as exc:
        logger.warning("cannot notify systemd (%s): %s", message.split("\n", 1)[0], exc)
        return False
    return True
