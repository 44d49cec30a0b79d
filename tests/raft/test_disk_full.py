"""A replica whose Raft directory's file system fills up: it exits with a clear error (not SIGBUS),
the other two keep committing, and once space is back it restarts and catches up from its intact
journal. The replica runs in a process of its own (tests/raft/replica_child.py) so it can exit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal

from raftpg.consensus import ConsensusError
from raftpg.consensus.durable import EXIT_JOURNAL_FAILED
from raftpg.consensus.settings import JOURNAL_FILE
from tests.raft.conftest import Cluster, wait_until
from tests.tmpfs import fill, free, small_tmpfs

pytestmark = [pytest.mark.raft, pytest.mark.timeout(120)]

CMD_TIMEOUT = 3.0
PAD = "x" * 2000  # member records this big fill a 1 MiB journal file system within a few hundred
MAX_WRITES = 1000
REPO = Path(__file__).resolve().parents[2]


class ChildReplica:
    """Replica number `index` of the cluster, in its own process, logging to its own file."""

    def __init__(self, cluster: Cluster, index: int, root: Path) -> None:
        self.cluster = cluster
        self.index = index
        self.status_file = root / "child-status.json"
        self.logs: list[Path] = []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.status_file.parent / f"child-{len(self.logs)}.log"
        self.logs.append(log)
        self.status_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "tests.raft.replica_child", self.cluster.addrs[self.index],
                ",".join(self.cluster.addrs), str(self.cluster.data_dir(self.index)), str(self.status_file)]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    def exited(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def members(self) -> list[str] | None:
        try:
            members: list[str] = json.loads(self.status_file.read_text())["members"]
        except (OSError, ValueError):
            return None
        return members

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it does not go within 10 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def journal_indexes(journal_file: Path) -> list[int]:
    journal = FileJournal(str(journal_file))
    try:
        return [idx for _, idx, _ in journal]
    finally:
        journal._destroy()


async def test_a_full_raft_disk_stops_the_replica_cleanly_and_it_catches_up_when_space_returns(
        tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 3)
    small_dir = cluster.data_dir(2)
    child = ChildReplica(cluster, 2, tmp_path)
    with small_tmpfs(small_dir):
        try:
            child.start()
            await cluster.start(0)
            await cluster.start(1)
            writer = cluster.node(0)
            await writer.barrier(timeout=15)
            await writer.publish_member("before", {"pad": PAD}, timeout=CMD_TIMEOUT)
            await wait_until(lambda: "before" in (child.members() or []), 15, "the small-disk replica to apply")

            fill(small_dir)
            writes = 0
            while child.exited() is None:
                writes += 1
                assert writes < MAX_WRITES, "the replica on the full disk never stopped"
                try:
                    await writer.publish_member(f"m{writes}", {"pad": PAD}, timeout=CMD_TIMEOUT)
                except ConsensusError:  # the full replica may have been the Raft leader
                    await cluster.wait_leader(timeout=10)
            assert child.exited() == EXIT_JOURNAL_FAILED, f"exit status {child.exited()} (-7 is SIGBUS)"
            log = child.logs[0].read_text()
            assert f"CRITICAL Raft journal: no space left on device in {small_dir} (" in log, log[-3000:]
            assert "stopping; the fence stops PostgreSQL at the lease deadline" in log

            await cluster.wait_leader(timeout=10)
            for k in range(5):
                await writer.publish_member(f"after{k}", {"pad": PAD}, timeout=CMD_TIMEOUT)
            indexes = journal_indexes(small_dir / JOURNAL_FILE)
            assert indexes and indexes == list(range(indexes[0], indexes[0] + len(indexes)))

            free(small_dir)
            child.start()
            expected = sorted(writer.snapshot().members)
            assert "after4" in expected
            await wait_until(lambda: child.members() == expected, 30, "the restarted replica to catch up")
            assert child.exited() is None
            restart_log = child.logs[1].read_text()
            assert "CRITICAL" not in restart_log and "Traceback" not in restart_log, restart_log[-3000:]
        finally:
            child.stop()
            await cluster.stop_all()


async def test_a_sparse_journal_on_a_full_disk_is_a_start_up_error(tmp_path: Path) -> None:
    """A journal pysyncobj grew alone (an older raftpg) has holes: start-up allocates them first,
    so a full disk refuses the start with the reason instead of faulting later."""
    cluster = Cluster(tmp_path, 1)
    data_dir = cluster.data_dir(0)
    with small_tmpfs(data_dir):
        bare = FileJournal(str(data_dir / JOURNAL_FILE))
        for idx in range(1, 10):
            bare.add(PAD.encode(), idx, 1)
        bare._destroy()
        fill(data_dir)
        with pytest.raises(ConsensusError, match=f"Raft journal: no space left on device in {data_dir} "):
            await cluster.start(0)
        assert cluster.running() == []
        free(data_dir)
        await cluster.start(0)
        try:
            await cluster.node(0).barrier(timeout=10)
            assert cluster.node(0).raft_status().log_len >= 9
        finally:
            await cluster.stop_all()
