"""Whether a standby that answers no query yet (not consistent) streams WAL, from its process titles.

Such a standby refuses connections, so pg_stat_wal_receiver cannot be read; its WAL receiver's
process title still says it. PostgreSQL sets 'walreceiver streaming <LSN>' each time it flushed
WAL it received, and never while it only connects, waits, or is refused because the WAL it asked
for is gone. Needs update_process_title (on by default on Linux); without it a recovering standby
simply never counts as streaming.
"""

import re

from raftpg.postgres.lsn import parse_lsn
from raftpg.postgres.status import WalReceiverInfo
from raftpg.procfs import children_of, process_cmdline

_STREAMING = re.compile(r"\bwalreceiver streaming ([0-9A-Fa-f]+/[0-9A-Fa-f]+)")


def streaming_receiver(title_parts: list[str]) -> WalReceiverInfo | None:
    """A streaming WAL receiver, if this process title (its command line) is one."""
    for part in title_parts:
        match = _STREAMING.search(part)
        if match is not None:
            return WalReceiverInfo(status="streaming", upstream=None, received_tli=None,
                                   flushed_lsn=parse_lsn(match.group(1)))
    return None


def receiver_from_titles(postmaster_pid: int) -> WalReceiverInfo | None:
    """The postmaster's WAL receiver child, if its title says it streams."""
    for pid in children_of(postmaster_pid):
        receiver = streaming_receiver(process_cmdline(pid))
        if receiver is not None:
            return receiver
    return None
