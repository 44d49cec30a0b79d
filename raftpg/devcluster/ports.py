"""Free TCP ports for local clusters, taken below the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket
from pathlib import Path

FIRST_TEST_PORT = 10000  # loopback clusters take free ports from here up to the ephemeral range

_handed_out: set[int] = set()


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports free on host now, chosen below the kernel's ephemeral range (a port the kernel hands
    out for bind to port 0 can be taken by any outgoing connection, ours or PostgreSQL's, before
    the server meant to get it binds it), and never one this process handed out before."""
    if count == 0:
        return []
    first_ephemeral = _first_ephemeral_port()
    pool = list(range(FIRST_TEST_PORT, max(FIRST_TEST_PORT + count, first_ephemeral)))
    random.shuffle(pool)
    chosen: list[int] = []
    for port in pool:
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == count:
            _handed_out.update(chosen)
            return chosen
    raise RuntimeError(f"no {count} free ports between {FIRST_TEST_PORT} and {first_ephemeral}")


def _first_ephemeral_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
