"""`raftpg systemd-unit`: the service unit for one node, printed for /etc/systemd/system/raftpg.service."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# After SIGTERM the daemon waits up to max(ttl, 10) s for its HA cycle and as long again for the
# hand-over of the lease, then PostgreSQL's shutdown checkpoint; this margin covers the checkpoint.
CHECKPOINT_MARGIN = 60


def default_binary() -> Path:
    """The single file itself when this is one (`make dist`), else where pip puts the script."""
    if getattr(sys, "frozen", False):
        return Path(sys.executable)
    return Path("/usr/local/bin/raftpg")


@dataclass(frozen=True)
class UnitOptions:
    binary: Path = field(default_factory=default_binary)
    config: Path = Path("/etc/raftpg/node.yml")
    user: str = "postgres"
    ttl: float = 10.0

    @property
    def stop_timeout(self) -> int:
        return int(2 * max(self.ttl, 10.0)) + CHECKPOINT_MARGIN


def render_unit(options: UnitOptions) -> str:
    return f"""\
# raftpg: PostgreSQL high availability with embedded Raft. Written by `raftpg systemd-unit`.
[Unit]
Description=raftpg PostgreSQL HA node ({options.config})
After=network-online.target
Wants=network-online.target

[Service]
# READY=1 is sent once the node has caught up with the Raft log and its HA loop runs. It comes
# from the Python process, a child of the single-file binary's bootloader (the main PID).
Type=notify
NotifyAccess=all
User={options.user}
Group={options.user}
ExecStart={options.binary} run -c {options.config}
# SIGHUP rewrites PostgreSQL's configuration from raftpg's and reloads PostgreSQL (as `raftpg ctl
# reload`). Changes to {options.config} itself take effect on a restart.
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM to raftpg only, and nothing else killed when it has exited: it hands the lease over and
# stops PostgreSQL and its fence itself. Paused (raftpg ctl pause) it leaves both running, so that
# a restarted raftpg (an upgrade) takes the primary over with its lease; mixed or control-group
# would SIGKILL PostgreSQL behind its back once raftpg is gone.
KillMode=process
KillSignal=SIGTERM
TimeoutStopSec={options.stop_timeout}
# The first node waits for a Raft majority: as long as the other hosts take to come up.
TimeoutStartSec=infinity
Restart=on-failure
RestartSec=5
# 75 (EX_TEMPFAIL): raftpg asked to be replaced (`raftpg ctl rolling-restart --daemon`); start it
# again whatever Restart= says. RestartSec plus start-up must stay well under the lease ttl.
RestartForceExitStatus=75
LimitNOFILE=65536
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=full

[Install]
WantedBy=multi-user.target
"""


def _cmd(args: argparse.Namespace) -> int:
    options = UnitOptions(binary=args.binary, config=args.config, user=args.user, ttl=args.ttl)
    sys.stdout.write(render_unit(options))
    return 0


def register(sub: Any) -> None:
    defaults = UnitOptions()
    unit = sub.add_parser("systemd-unit", help="print a systemd service unit for this node")
    unit.add_argument("--binary", type=Path, default=defaults.binary, help=f"default {defaults.binary}")
    unit.add_argument("-c", "--config", type=Path, default=defaults.config, help=f"default {defaults.config}")
    unit.add_argument("--user", default=defaults.user, help="OS user PostgreSQL runs as (default postgres)")
    unit.add_argument("--ttl", type=float, default=defaults.ttl,
                      help="the cluster's lease ttl: the stop timeout leaves room for the hand-over")
    unit.set_defaults(func=_cmd)
