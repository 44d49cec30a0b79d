"""One Raft replica in a process of its own, for tests where the replica must be able to exit:
`python -m tests.raft.replica_child SELF_ADDR PARTNER,... DATA_DIR STATUS_FILE`.

It logs to stderr and keeps STATUS_FILE (JSON: last applied index and member names) current until
SIGTERM stops it, or until raftpg itself ends the process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from raftpg.consensus import RaftNode
from tests.raft.conftest import PASSWORD, SCOPE, timings_for_tests

STATUS_EVERY = 0.05


def write_status(node: RaftNode, status_file: Path) -> None:
    snap = node.snapshot()
    tmp = status_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"last_applied": snap.last_applied, "members": sorted(snap.members)}))
    os.replace(tmp, status_file)


async def run(self_addr: str, partners: list[str], data_dir: Path, status_file: Path) -> None:
    node = RaftNode(scope=SCOPE, self_addr=self_addr, partner_addrs=partners, data_dir=data_dir,
                    password=PASSWORD, timings=timings_for_tests(), on_change=lambda: None)
    await node.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            write_status(node, status_file)
            await asyncio.sleep(STATUS_EVERY)
    finally:
        await node.stop()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    self_addr, partners, data_dir, status_file = argv
    asyncio.run(run(self_addr, partners.split(","), Path(data_dir), Path(status_file)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
