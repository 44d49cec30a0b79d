"""What systemd's RestartForceExitStatus=75 does for a LocalCluster: a raftpg that exited asking
to be replaced (EX_TEMPFAIL, `POST /restart {"daemon": true}`) is started again at once.

A thread polls the launcher's own children while the context lasts; a node that keeps exiting is
started again at most `limit` times, so a broken binary cannot loop forever.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from types import TracebackType

from raftpg.cli.self_exec import EX_TEMPFAIL
from raftpg.devcluster.cluster import LocalCluster

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restart:
    node: str
    old_pid: int
    new_pid: int


@dataclass
class Supervisor:
    cluster: LocalCluster
    interval: float = 0.1
    limit: int = 10
    restarts: list[Restart] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> Supervisor:
        self._thread = threading.Thread(target=self._run, name="raftpg-supervisor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Start again every node whose raftpg exited with EX_TEMPFAIL since the last poll."""
        for name, node in self.cluster.nodes.items():
            process = node.process
            if process is None or process.poll() != EX_TEMPFAIL:
                continue
            if sum(r.node == name for r in self.restarts) >= self.limit:
                continue
            self.cluster.start_node(name)
            assert node.process is not None
            self.restarts.append(Restart(name, process.pid, node.process.pid))
            logger.info("%s: raftpg %d exited with %d; started %d", name, process.pid, EX_TEMPFAIL,
                        node.process.pid)
