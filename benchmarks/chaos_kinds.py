"""The chaos runner's fault kinds: each injects one fault into a running cluster and returns once the
faulty node is back (processes running, network healed, space freed); recovery is not waited for.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from raftpg.poll import wait_for
from raftpg.postgres.datadir import programs_writing
from tests.cluster import faults
from tests.cluster.faults import FaultCluster
from tests.cluster.safety import SafetyChecker

logger = logging.getLogger("chaos")

KILL_NODE = "kill_primary_node"
KILL_POSTMASTER = "kill_primary_postmaster"
SIGSTOP = "sigstop_primary_raftpg"
PARTITION = "partition_primary"
SWITCHOVER_KILL = "kill_replica_during_switchover"
POSTMASTER_THEN_NODE = "kill_postmaster_then_node"
SIGSTOP_POSTGRES = "sigstop_primary_postgres"
POWER_LOSS = "power_loss"
RAFT_PARTITION = "partition_primary_raft"
REPLICATION_PARTITION = "partition_primary_replication"
KILL_DURING_REWIND = "kill_during_rewind"
KILL_DURING_BASEBACKUP = "kill_during_basebackup"
RAFT_DISK_FULL = "raft_disk_full"
KINDS = (KILL_NODE, KILL_POSTMASTER, SIGSTOP, PARTITION, SWITCHOVER_KILL, POSTMASTER_THEN_NODE, SIGSTOP_POSTGRES,
         POWER_LOSS, RAFT_PARTITION, REPLICATION_PARTITION, KILL_DURING_REWIND, KILL_DURING_BASEBACKUP,
         RAFT_DISK_FULL)
NETNS_KINDS = (PARTITION, RAFT_PARTITION, REPLICATION_PARTITION)
NFT_KINDS = (RAFT_PARTITION, REPLICATION_PARTITION)
PROGRAM_POLL = 0.005


RULE_5_HOLDS = ("not in the synchronous set", "synchronous members needed")
"""How a member's last decision says the synchronous-set rule keeps it out of the race (candidates.py)."""
NO_CANDIDATE = ("no data directory", "cannot tell our own WAL position")
"""How a member's last decision says it could not take over anyway (re-cloning, or its PostgreSQL not
started far enough to report a WAL position)."""


class NotRecovered(Exception):
    """The cluster did not get back to a writable primary / every member streaming in time."""


@dataclass(frozen=True)
class Injected:
    """What a fault did, and when its node was back (monotonic)."""

    detail: str
    back: float
    writable_s: float | None = None  # power loss: start of all nodes to the first acknowledged write
    identifier_changed: bool = False




class Chaos:
    def __init__(self, cluster: FaultCluster, checker: SafetyChecker, rng: random.Random, recovery_timeout: float,
                 disks: faults.RaftDisks | None) -> None:
        self.cluster = cluster
        self.checker = checker
        self.rng = rng
        self.recovery_timeout = recovery_timeout
        self.disks = disks
        self.ttl = cluster.ttl
        self.frozen: list[int] = []
        self.blocked: set[str] = set()
        self.filled: set[str] = set()
        self.lost_disks = 0
        self.faults: dict[str, Callable[[str], Injected]] = {
            KILL_NODE: self.kill_node, KILL_POSTMASTER: self.kill_postmaster, SIGSTOP: self.sigstop,
            PARTITION: self.partition, SWITCHOVER_KILL: self.switchover_kill,
            POSTMASTER_THEN_NODE: self.postmaster_then_node, SIGSTOP_POSTGRES: self.sigstop_postgres,
            POWER_LOSS: self.power_loss, RAFT_PARTITION: self.raft_partition,
            REPLICATION_PARTITION: self.replication_partition, KILL_DURING_REWIND: self.kill_during_rewind,
            KILL_DURING_BASEBACKUP: self.kill_during_basebackup, RAFT_DISK_FULL: self.raft_disk_full,
        }

    # --- waiting -------------------------------------------------------------------------------
    def _wait(self, probe: Callable[[], object], what: str) -> None:
        try:
            wait_for(probe, self.recovery_timeout, what, interval=0.02)
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc

    def healthy(self) -> str:
        try:
            return self.cluster.wait_healthy(self.recovery_timeout)
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc

    def primary(self, exclude: str | None = None) -> str:
        try:
            return self.cluster.wait_primary(self.recovery_timeout, exclude=exclude)
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc

    def acked_after(self, since: float) -> tuple[int, float, int] | None:
        acked = self.checker.writer.acked
        return acked[-1] if acked and acked[-1][1] > since else None

    def writable(self, since: float | None = None) -> tuple[int, float, int]:
        """Wait for the writer's next acknowledgement after `since` (default now)."""
        start = time.monotonic() if since is None else since
        self._wait(lambda: self.acked_after(start), "an acknowledged write")
        found = self.acked_after(start)
        assert found is not None
        return found

    def restart_later(self, name: str, longest: float) -> float:
        delay = self.rng.uniform(0, longest)
        time.sleep(delay)
        self.cluster.start_node(name)
        return delay

    # --- fault kinds: each returns once its node is back -----------------------------------------
    def kill_node(self, primary: str) -> Injected:
        self.cluster.kill_node(primary)
        delay = self.restart_later(primary, 2 * self.ttl)
        return Injected(f"{primary} killed, restarted after {delay:.1f}s", time.monotonic())

    def kill_postmaster(self, primary: str) -> Injected:
        node = self.cluster.nodes[primary]
        old = node.postmaster_pid()
        self.cluster.kill_postmaster(primary)
        # /primary may answer from a state cached just before the kill: wait for the restart itself.
        self._wait(lambda: node.postmaster_pid() not in (None, old), f"a new postmaster on {primary}")
        return Injected(f"{primary}'s postmaster killed", time.monotonic())

    def sigstop(self, primary: str) -> Injected:
        frozen = self.ttl * self.rng.uniform(1.5, 3.0)
        self.cluster.kill_raftpg(primary, signal.SIGSTOP)
        try:
            time.sleep(frozen)
        finally:
            self.cluster.kill_raftpg(primary, signal.SIGCONT)
        return Injected(f"{primary}'s raftpg stopped for {frozen:.1f}s", time.monotonic())

    def partition(self, primary: str) -> Injected:
        cut_for = self.ttl * self.rng.uniform(1.5, 3.0)
        self.cluster.cut(primary)
        try:
            time.sleep(cut_for)
        finally:
            self.cluster.heal(primary)
        return Injected(f"{primary} cut off for {cut_for:.1f}s", time.monotonic())

    def switchover_kill(self, primary: str) -> Injected:
        victim = self.rng.choice([name for name in self.cluster.nodes if name != primary])
        answer: list[tuple[int, object]] = []
        request = threading.Thread(target=lambda: answer.append(self.cluster.api_request(
            primary, "POST", "/switchover", {"leader": primary}, timeout=self.ttl + 20)), daemon=True)
        request.start()
        delay = self.rng.uniform(0.05, 1.0)
        time.sleep(delay)
        self.cluster.kill_node(victim)
        restart = self.restart_later(victim, self.ttl)
        back = time.monotonic()
        request.join(timeout=self.ttl + 25)
        status, body = answer[0] if answer else ("no answer", None)
        message = body.get("message") or body.get("error") if isinstance(body, dict) else body
        return Injected(f"switchover from {primary} (HTTP {status}: {message}); {victim} killed {delay:.2f}s in, "
                        f"restarted {restart:.1f}s later", back)

    def postmaster_then_node(self, primary: str) -> Injected:
        old = self.cluster.nodes[primary].postmaster_pid()
        self.cluster.kill_postmaster(primary)
        crashed = time.monotonic()
        self._wait(lambda: faults.postmaster_replaced(self.cluster, primary, old),
                   f"a new postmaster on {primary} or another primary")
        _, acked_at, port = self.writable()
        server = next((n for n, node in self.cluster.nodes.items() if node.ports.pg == port), str(port))
        delay = self.rng.uniform(0, 3.0)
        time.sleep(delay)
        self.cluster.kill_node(primary)
        restart = self.restart_later(primary, self.ttl)
        return Injected(f"{primary}'s postmaster killed; writes again after {acked_at - crashed:.1f}s (on {server}); "
                        f"{primary} killed {delay:.1f}s later, restarted after {restart:.1f}s", time.monotonic())

    def sigstop_postgres(self, primary: str) -> Injected:
        frozen = self.ttl * self.rng.uniform(1.5, 3.0)
        self.frozen = faults.freeze_postgres(self.cluster, primary)
        try:
            time.sleep(frozen)
        finally:
            faults.thaw(self.frozen)
            count, self.frozen = len(self.frozen), []
        return Injected(f"{primary}'s PostgreSQL ({count} processes) stopped for {frozen:.1f}s", time.monotonic())

    def power_loss(self, primary: str) -> Injected:
        before = faults.system_identifier(self.cluster.dsn(primary))
        faults.power_loss(self.cluster)
        down = self.rng.uniform(0, self.ttl)
        time.sleep(down)
        for name in self.cluster.nodes:
            self.cluster.start_node(name)
        back = time.monotonic()
        _, acked_at, _ = self.writable(back)
        after = faults.system_identifier(self.cluster.dsn_any_primary())
        changed = after != before
        if changed:
            logger.error("power loss: system identifier %d became %d", before, after)
        return Injected(f"all nodes killed, started {down:.1f}s later; writable {acked_at - back:.1f}s after the "
                        f"start; system identifier {'CHANGED' if changed else 'kept'}", back,
                        writable_s=round(acked_at - back, 2), identifier_changed=changed)

    def _port_partition(self, primary: str, ports: list[int], what: str) -> Injected:
        cut_for = self.ttl * self.rng.uniform(1.5, 3.0)
        faults.block_ports(self.cluster, primary, ports)
        self.blocked.add(primary)
        try:
            time.sleep(cut_for)
        finally:
            faults.unblock_ports(self.cluster, primary)
            self.blocked.discard(primary)
        return Injected(f"{primary}'s {what} dropped for {cut_for:.1f}s", time.monotonic())

    def raft_partition(self, primary: str) -> Injected:
        return self._port_partition(primary, faults.raft_ports(self.cluster), "Raft traffic")

    def replication_partition(self, primary: str) -> Injected:
        return self._port_partition(primary, faults.pg_ports(self.cluster), "PostgreSQL traffic to members")

    def _failover_from(self, killed: str) -> bool:
        """Wait for another member to take over from the killed primary. The synchronous-set rule
        (DESIGN rule 5) may forbid every survivor: when the killed node is the only member known to
        hold every acknowledged write, they wait for it; a survivor may also be unable to take over
        for a time (re-cloning with no primary to clone from, or its PostgreSQL not consistent yet).
        Every survivor's last decision saying one of these for 2 ttl ends the wait (False); the
        caller restarts the node, as systemd would, and the fault's detail says so."""
        deadline = time.monotonic() + self.recovery_timeout
        blocked_since: float | None = None
        survivors = [name for name in self.cluster.nodes if name != killed]
        while time.monotonic() < deadline:
            leader = self.cluster.primary()
            if leader is not None and leader != killed:
                return True
            decisions = [self._last_decision(name) for name in survivors]
            if all(any(reason in d for reason in (*RULE_5_HOLDS, *NO_CANDIDATE)) for d in decisions):
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 2 * self.ttl:
                    logger.warning("no failover from %s: %s", killed, "; ".join(decisions))
                    return False
            else:
                blocked_since = None
            time.sleep(0.2)
        raise NotRecovered(f"no member other than {killed} became primary within {self.recovery_timeout:g}s")

    def _last_decision(self, name: str) -> str:
        status, body = self.cluster.api_get(name, "/patroni", timeout=1.0)
        if status != 200 or not isinstance(body, dict):
            return ""
        return str((body.get("raftpg") or {}).get("last_decision") or "")

    def _kill_during(self, primary: str, program: str, lose_data: bool) -> Injected:
        """Kill the primary, let another member take over, restart it (with its data directory lost if
        asked) and kill it again the moment its rejoin runs `program`."""
        node = self.cluster.nodes[primary]
        self.cluster.kill_node(primary)
        if not self._failover_from(primary):
            self.cluster.start_node(primary)
            self.primary()
            return Injected(f"{primary} killed; no other member could take over (rule 5 held the race for "
                            f"{primary}, or the others were still rejoining); restarted, no rejoin to interrupt",
                            time.monotonic())
        self.writable()  # the new timeline has writes the old primary lacks
        if lose_data:
            shutil.rmtree(node.data_dir)
            self.lost_disks += 1
        self.cluster.start_node(primary)
        started = time.monotonic()
        found: list[int] = []
        polls = itertools.count()

        def running() -> bool:
            pids = programs_writing(node.data_dir, program)
            if pids:
                found.append(pids[0])
                return True
            if next(polls) % 50:  # the /proc scan is the fast path; ask the cluster now and then
                return False
            return primary in self.cluster.streaming_replicas(self.cluster.primary() or primary)

        try:
            wait_for(running, self.recovery_timeout, f"{program} on {primary}", interval=PROGRAM_POLL)
        except TimeoutError as exc:
            raise NotRecovered(str(exc)) from exc
        if not found:
            return Injected(f"{primary} killed and restarted; it rejoined without {program}", time.monotonic())
        delay = self.rng.uniform(0, 0.3)
        time.sleep(delay)
        self.cluster.kill_node(primary)
        seen = time.monotonic() - started
        restart = self.restart_later(primary, self.ttl)
        return Injected(f"{primary} killed, restarted{' without its data directory' if lose_data else ''}; "
                        f"killed again {delay:.2f}s into {program} ({seen:.1f}s after its start), restarted "
                        f"{restart:.1f}s later", time.monotonic())

    def kill_during_rewind(self, primary: str) -> Injected:
        return self._kill_during(primary, "pg_rewind", lose_data=False)

    def kill_during_basebackup(self, primary: str) -> Injected:
        return self._kill_during(primary, "pg_basebackup", lose_data=True)

    def raft_disk_full(self, primary: str) -> Injected:
        if self.disks is None:
            raise RuntimeError("raft_disk_full needs the Raft directories on tmpfs")
        full_for = self.ttl * self.rng.uniform(1.5, 3.0)
        size = self.disks.fill(primary)
        self.filled.add(primary)
        try:
            time.sleep(full_for)
            leader = self.cluster.primary()
        finally:
            self.disks.free(primary)
            self.filled.discard(primary)
        node = self.cluster.nodes[primary]
        outcome = "kept running"
        if node.raftpg_pid() is None:
            code = node.process.poll() if node.process is not None else None
            outcome = f"exited with {exit_status(code)} (restarted)"
            logger.warning("raft_disk_full: %s's raftpg %s", primary, outcome)
            self.cluster.start_node(primary)
        return Injected(f"{primary}'s Raft file system full ({size >> 20} MB filler) for {full_for:.1f}s; primary "
                        f"then {leader}; raftpg {outcome}", time.monotonic())

    def inject(self, kind: str, primary: str) -> Injected:
        return self.faults[kind](primary)

    def repair(self) -> None:
        """Undo whatever a fault left behind: heal, unblock, resume, free space and start every node."""
        faults.thaw(self.frozen)
        self.frozen = []
        for name in list(self.blocked):
            faults.unblock_ports(self.cluster, name)
        self.blocked.clear()
        if self.disks is not None:
            for name in list(self.filled):
                self.disks.free(name)
        self.filled.clear()
        for name, node in self.cluster.nodes.items():
            if self.cluster.netns:
                with contextlib.suppress(RuntimeError):
                    self.cluster.heal(name)
            pid = node.raftpg_pid()
            if pid is None:
                self.cluster.start_node(name)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


def exit_status(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
