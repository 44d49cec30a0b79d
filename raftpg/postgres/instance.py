"""Control of one local PostgreSQL 15: create, clone, start, stop, promote, rewind, inspect.

This layer does what it is told and reports facts; whether to do it is the HA loop's decision.
It keeps two defaults that protect DESIGN rule 1 on their own: a data directory that was just
cloned or rewound gets standby.signal at once, and nothing here starts a primary unless the
caller says standby=False. Every call is bounded by its timeout.
"""

import asyncio
import contextlib
import enum
import logging
import math
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from psycopg.abc import Params
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from raftpg.config import Address, PostgresSettings
from raftpg.fence.kill import kill_postmaster_tree
from raftpg.poll import async_wait_until
from raftpg.postgres import conf, datadir, provision
from raftpg.postgres.command import command_env, run_command
from raftpg.postgres.conffiles import KEEP, STANDBY_SIGNAL, ConfFiles, Keep
from raftpg.postgres.controldata import ControlData, read_controldata
from raftpg.postgres.datadir import DataDirState
from raftpg.postgres.errors import CommandFailed, CommandTimeout, PostgresError, QueryFailed, StartFailed
from raftpg.postgres.receiver_title import receiver_from_titles
from raftpg.postgres.rewind import RewindOutcome, RewindResult
from raftpg.postgres.serverlog import log_size, log_tail
from raftpg.postgres.session import PgSession, Statement
from raftpg.postgres.slots import SlotChanges, SlotInfo, ensure_slots, list_slots
from raftpg.postgres.status import PgStatus, query_status
from raftpg.procfs import process_alive

logger = logging.getLogger(__name__)

_KILL_WAIT = 5.0
PROMOTE_POLL = 0.01


STOP_MODES = ("smart", "fast", "immediate")


class Started(enum.Enum):
    """How a start ended, when it did not fail."""

    READY = "ready"  # accepting connections (a standby: it reached a consistent state)
    RECOVERING = "recovering"  # a standby's postmaster runs, still replaying towards a consistent state


class PostgresInstance:
    """One PostgreSQL data directory and the server running on it."""

    def __init__(self, settings: PostgresSettings, member_name: str, *, log_path: Path | None = None) -> None:
        self.settings = settings
        self.member_name = member_name
        self.data_dir = settings.data_dir
        self.log_path = log_path or settings.data_dir.parent / f"{settings.data_dir.name}.log"
        self._files = ConfFiles(settings, member_name)
        self._session = PgSession(
            socket_dir=settings.socket_dir,
            port=settings.listen.port,
            user=settings.superuser.username,
            password=settings.superuser.password or None,
        )
        self._cloning = False
        # Paths looked at every HA cycle, built once. The markers sit next to the data directory:
        # one while pg_basebackup fills it (raftpg may be killed meanwhile), one while pg_rewind
        # changes it (pg_rewind deletes the files in it that the source lacks).
        self.clone_marker = self.data_dir.with_name(f"{self.data_dir.name}.cloning")
        self.rewind_marker = self.data_dir.with_name(f"{self.data_dir.name}.rewinding")
        self._standby_signal = self.data_dir / STANDBY_SIGNAL

    # -- the data directory ------------------------------------------------------------------

    def data_dir_state(self) -> DataDirState:
        if self.clone_marker.exists() and not self._cloning:
            self._set_aside_interrupted_clone()
        return datadir.data_dir_state(self.data_dir)

    def _set_aside_interrupted_clone(self) -> None:
        """A clone an earlier raftpg process began and never finished (it was killed): a partial copy
        of the leader's data, which otherwise would block this member for good as 'neither empty
        nor a PostgreSQL cluster'. Its orphaned pg_basebackup is stopped; the copy is moved aside (a
        rename, never a deletion) so the next cycle clones again."""
        for pid in datadir.programs_writing(self.data_dir, "pg_basebackup"):
            logger.warning("stopping pg_basebackup %s left writing into %s by an earlier process", pid,
                           self.data_dir)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if datadir.data_dir_state(self.data_dir) not in (DataDirState.MISSING, DataDirState.EMPTY):
            moved = datadir.move_aside(self.data_dir)
            logger.warning("an interrupted pg_basebackup left a partial copy: moved it to %s to clone again",
                           moved)
        self.clone_marker.unlink(missing_ok=True)

    def postmaster_pid(self) -> int | None:
        return datadir.postmaster_pid(self.data_dir)

    def rewind_interrupted(self) -> bool:
        """pg_rewind began changing the data directory and did not finish (killed, or failed while
        copying): PostgreSQL documents such a directory as unusable; only a new clone helps."""
        return self.rewind_marker.exists()

    def surely_stopped(self) -> bool:
        """No live postmaster and no process of an earlier one left on the data directory."""
        return self.postmaster_pid() is None and not datadir.processes_in(self.data_dir)

    async def wait_orphans_gone(self, timeout: float) -> None:
        """With no postmaster, give the backends of a killed one (they exit on noticing its death,
        within milliseconds) a moment, so that a crash is judged 'surely stopped' this cycle."""
        await async_wait_until(lambda: self.postmaster_pid() is not None or not datadir.processes_in(self.data_dir),
                               timeout, interval=0.02)

    def standby_signal_present(self) -> bool:
        return self._standby_signal.exists()

    def move_data_dir_aside(self) -> Path:
        """Rename the data directory out of the way (never delete data); refuses while running."""
        pid = self.postmaster_pid()
        if pid is not None:
            raise PostgresError(f"refusing to move {self.data_dir} aside: postmaster {pid} runs on it")
        if self.data_dir_state() is DataDirState.MISSING:
            raise PostgresError(f"cannot move {self.data_dir} aside: it does not exist")
        moved = datadir.move_aside(self.data_dir)
        self.rewind_marker.unlink(missing_ok=True)
        return moved

    async def controldata(self, timeout: float) -> ControlData:
        return await read_controldata(self.settings.bin_dir, self.data_dir, timeout)

    # -- creating a data directory -----------------------------------------------------------

    async def initdb(self, options: Sequence[str], timeout: float) -> None:
        """Create a new cluster (provision.initdb)."""
        self._require_empty("initdb")
        await provision.initdb(self.settings, self._files, options, timeout)

    async def bootstrap_roles(self, timeout: float) -> None:
        """Create (or update) the replication role on a fresh primary; idempotent."""
        await provision.bootstrap_roles(self.settings, self._session, timeout)

    async def basebackup(self, source: Address, timeout: float, *, slot: str | None = None) -> None:
        """Clone the data directory from source; the clone is marked standby at once."""
        state = self._require_empty("basebackup")
        provision.make_data_dir(self.data_dir)
        self._cloning = True
        self.clone_marker.touch()
        try:
            await provision.basebackup(self.settings, self._files, self.member_name, source, timeout, state, slot)
        finally:
            self.clone_marker.unlink(missing_ok=True)
            self._cloning = False

    # -- running the server ------------------------------------------------------------------

    async def start(
        self,
        *,
        standby: bool,
        upstream: Address | None,
        slot: str | None,
        parameters: Mapping[str, str],
        timeout: float,
        locked: bool = False,
        ready_within: float | None = None,
    ) -> Started:
        """Write our configuration and start the server (parameters from conf.build_parameters).

        standby=False removes standby.signal: only the lease holder may ask for that (rule 1).
        locked: only the daemon may connect (conf.render_locked_pg_hba) until the next reload.
        A standby accepts connections only once it is consistent, which it never is if the WAL it
        needs is gone: it is waited for at most `ready_within` (default: all of timeout), and a
        postmaster still recovering then is left running and reported as RECOVERING, for the HA
        loop to watch. Raises StartFailed, with the tail of the server log, if the postmaster did
        not come up (or died); a primary still recovering when the timeout hits is left running.
        """
        if upstream is not None and not standby:
            raise ValueError("a primary has no upstream")
        if ready_within is not None and not standby:
            raise ValueError("only a standby may be left recovering")
        if self.data_dir_state() is not DataDirState.INITIALIZED:
            raise PostgresError(f"cannot start: {self.data_dir} is {self.data_dir_state().value}")
        pid = self.postmaster_pid()
        if pid is not None:
            raise PostgresError(f"cannot start: postmaster {pid} already runs on {self.data_dir}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._wait_dead_postmaster_reaped(timeout / 2)
        await asyncio.to_thread(self._files.write, parameters, upstream, slot, locked)
        await asyncio.to_thread(self._files.set_standby_signal, standby)
        log_offset = log_size(self.log_path)
        wait = max(1, math.floor(deadline - loop.time()))
        if ready_within is not None:
            wait = max(1, min(wait, math.floor(ready_within)))
        argv = [self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path)]
        argv += ["-w", "-t", str(wait), "-s"]
        try:
            await run_command(argv, timeout=wait + 2)
        except (CommandFailed, CommandTimeout) as exc:
            running = self.postmaster_pid()
            if not standby or running is None:
                raise StartFailed(f"PostgreSQL did not start: {exc}\n{log_tail(self.log_path, log_offset)}") from exc
            logger.warning("started PostgreSQL as standby%s (postmaster %s), not consistent yet after %ss: "
                           "left recovering", f" of {upstream}" if upstream else "", running, wait)
            return Started.RECOVERING
        logger.info("started PostgreSQL as %s%s (postmaster %s)", "standby" if standby else "primary",
                    f" of {upstream}" if upstream else "", self.postmaster_pid())
        return Started.READY

    async def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """pg_ctl stop -m mode; if the server is still up after timeout, SIGKILL it and its children."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {STOP_MODES}, not {mode!r}")
        pid = self.postmaster_pid()
        if pid is None:
            logger.info("stop: PostgreSQL is not running")
            return
        await self._session.close()
        argv = [self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode]
        argv += ["-w", "-t", str(max(1, math.ceil(timeout))), "-s"]
        try:
            result = await run_command(argv, timeout=timeout + 2, check=False)
            if result.returncode != 0:
                logger.warning("pg_ctl stop -m %s failed: %s", mode, result.output)
        except CommandTimeout:
            logger.warning("pg_ctl stop -m %s did not return within %.1fs", mode, timeout)
        if process_alive(pid):
            killed = kill_postmaster_tree(pid)
            logger.error("postmaster %d survived pg_ctl stop -m %s; SIGKILLed %s", pid, mode, killed)
            if not await _wait_gone(pid, _KILL_WAIT):
                raise PostgresError(f"postmaster {pid} survived SIGKILL")
        logger.info("stopped PostgreSQL (mode %s)", mode)

    async def restart(
        self,
        *,
        standby: bool,
        upstream: Address | None,
        slot: str | None,
        parameters: Mapping[str, str],
        timeout: float,
        mode: str = "fast",
    ) -> Started:
        """Stop (within half of timeout) and start again with the given configuration."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.stop(mode, timeout / 2)
        return await self.start(
            standby=standby,
            upstream=upstream,
            slot=slot,
            parameters=parameters,
            timeout=max(1.0, deadline - loop.time()),
        )

    async def reload(
        self,
        parameters: Mapping[str, str],
        *,
        upstream: Address | Keep | None = KEEP,
        slot: str | Keep | None = KEEP,
        timeout: float,
    ) -> None:
        """Rewrite our configuration and SIGHUP the postmaster (what pg_ctl reload does).

        By default the upstream and slot already in postgresql.conf are kept, so reloading a
        standby's parameters cannot cut it off its primary.
        """
        pid = self._require_running("reload")
        await asyncio.wait_for(asyncio.to_thread(self._files.reconfigure, parameters, upstream, slot), timeout)
        os.kill(pid, signal.SIGHUP)
        logger.info(
            "reloaded PostgreSQL configuration%s",
            f" (upstream {upstream})" if isinstance(upstream, Address) else "",
        )

    async def follow(
        self, upstream: Address, slot: str | None, parameters: Mapping[str, str], timeout: float
    ) -> None:
        """Point a running standby at another upstream: primary_conninfo reloads in PG 15. Also for
        a standby still recovering towards consistency, which accepts no connections yet: the
        WAL it waits for may be on the new upstream."""
        self._require_running("follow")
        if not self.standby_signal_present():
            raise PostgresError("cannot follow: this server is not in standby mode; restart it as a standby")
        await self.reload(parameters, upstream=upstream, slot=slot, timeout=timeout)
        logger.info("now following %s%s", upstream, f" with slot {slot}" if slot else "")

    async def promote(self, timeout: float, *, checkpoint: bool = True) -> None:
        """pg_promote, then wait until the server is out of recovery (writable); then CHECKPOINT so
        pg_controldata (which pg_rewind reads on this server as a source) shows the new timeline
        at once. Polled here every 10 ms: pg_ctl promote -w and pg_promote(wait) poll every 100 ms."""
        self._require_running("promote")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def remaining() -> float:
            left = deadline - loop.time()
            if left <= 0:
                raise PostgresError(f"promotion did not finish within {timeout:.0f}s")
            return left

        async def out_of_recovery() -> bool:
            rows = await self.execute("SELECT pg_is_in_recovery()", timeout=remaining())
            return not rows[0][0]

        await self.execute("SELECT pg_promote(wait => false)", timeout=remaining())
        if not await async_wait_until(out_of_recovery, remaining(), PROMOTE_POLL):
            raise PostgresError(f"promotion did not finish within {timeout:.0f}s")
        logger.info("promoted PostgreSQL")
        if checkpoint:
            await self.execute("CHECKPOINT", timeout=max(1.0, deadline - loop.time()))

    async def rewind(self, source: Address, timeout: float) -> RewindResult:
        """pg_rewind from source (stopped server only). Our configuration files are put back
        afterwards and standby.signal created, whatever the outcome."""
        pid = self.postmaster_pid()
        if pid is not None:
            raise PostgresError(f"cannot rewind: postmaster {pid} is running")
        if self.data_dir_state() is not DataDirState.INITIALIZED:
            raise PostgresError(f"cannot rewind: {self.data_dir} is {self.data_dir_state().value}")
        # Its crash recovery in single-user mode refuses to run while a killed postmaster named in
        # postmaster.pid is an unreaped zombie ("lock file already exists").
        await self._wait_dead_postmaster_reaped(min(5.0, timeout / 4))
        saved = await asyncio.to_thread(self._files.save)
        # pg_rewind may run crash recovery in single-user mode, which refuses standby mode.
        await asyncio.to_thread(self._files.set_standby_signal, False)
        su = self.settings.superuser
        conninfo = make_conninfo("", host=source.host, port=source.port, user=su.username, dbname="postgres",
                                 application_name=f"{self.member_name} pg_rewind", connect_timeout=5)
        argv = [self._bin("pg_rewind"), "--target-pgdata", str(self.data_dir), "--source-server", conninfo]
        env = command_env(c_locale=True, password=su.password or None)
        await asyncio.to_thread(self.rewind_marker.touch, 0o600)
        try:
            result = await run_command(argv, timeout=timeout, env=env, check=False)
            if result.returncode != 0:
                outcome = RewindResult(RewindOutcome.FAILED, result.output)
            elif "no rewind required" in result.output:
                outcome = RewindResult(RewindOutcome.NOT_NEEDED, result.output)
            else:
                outcome = RewindResult(RewindOutcome.REWOUND, result.output)
        except CommandTimeout as exc:
            outcome = RewindResult(RewindOutcome.FAILED, str(exc), timed_out=True)
        finally:
            await asyncio.to_thread(self._files.restore, saved)
            await asyncio.to_thread(self._files.set_standby_signal, True)
        if not outcome.changed_target_half_way:
            self.rewind_marker.unlink(missing_ok=True)
        log = logger.info if outcome.ok else logger.error
        log("pg_rewind from %s: %s\n%s", source, outcome.outcome.value, outcome.output[-2000:])
        return outcome

    # -- queries ------------------------------------------------------------------------------

    async def status(self, timeout: float) -> PgStatus:
        """Never raises for an unreachable server: that is reported in the status; one that refuses
        queries (a standby not consistent yet) with whether its WAL receiver streams (receiver_title)."""
        pid = self.postmaster_pid()
        if pid is None:
            await self._session.close()
            return PgStatus(running=False)
        try:
            async with asyncio.timeout(timeout):  # no task per call, unlike wait_for (every HA cycle)
                return await query_status(self._session, pid, timeout)
        except TimeoutError:
            return PgStatus(running=False, postmaster_pid=pid, error=f"no answer within {timeout:.1f}s")
        except QueryFailed as exc:
            # E.g. a standby not consistent yet: whether WAL still arrives shows in a process title.
            return PgStatus(running=False, postmaster_pid=pid, error=str(exc),
                            wal_receiver=receiver_from_titles(pid))

    async def execute(
        self, query: Statement, params: Params | None = None, *, timeout: float
    ) -> list[TupleRow]:
        """Run one statement as superuser (autocommit) and return its rows."""
        return await self._session.fetch(query, params, timeout=timeout)

    async def list_slots(self, timeout: float) -> tuple[SlotInfo, ...]:
        return await list_slots(self._session, timeout)

    async def ensure_slots(
        self, names: Iterable[str], timeout: float, *, keep: Iterable[str] = (), advance: bool = False
    ) -> SlotChanges:
        """A physical slot for every member in names (member or slot names, sanitised with
        slot_name_for), none for ourselves; other physical slots are dropped unless listed in
        keep. advance=True, on a standby: its inactive slots advance to its replay position."""
        own = conf.slot_name_for(self.member_name)
        wanted = {conf.slot_name_for(name) for name in names} - {own}
        return await ensure_slots(self._session, wanted, keep, timeout, advance=advance)

    async def close(self) -> None:
        await self._session.close()

    # -- helpers ------------------------------------------------------------------------------

    def _bin(self, program: str) -> str:
        return str(self.settings.bin_dir / program)

    def _require_empty(self, action: str) -> DataDirState:
        state = self.data_dir_state()
        if state not in (DataDirState.MISSING, DataDirState.EMPTY):
            raise PostgresError(f"cannot {action}: {self.data_dir} is {state.value}")
        return state

    def _require_running(self, action: str) -> int:
        pid = self.postmaster_pid()
        if pid is None:
            raise PostgresError(f"cannot {action}: PostgreSQL is not running")
        return pid

    async def _wait_dead_postmaster_reaped(self, timeout: float) -> None:
        """Wait until a killed postmaster is reaped. PostgreSQL takes a zombie named in
        postmaster.pid for a running server and refuses to start; deleting the lock file is no
        way out, as it is what PostgreSQL checks orphaned backends against."""
        pid = datadir.lock_file_pid(self.data_dir)
        if pid is None or datadir.process_state(pid) not in ("Z", "X"):
            return
        logger.info("waiting for the killed postmaster %d to be reaped", pid)
        if not await _wait_gone(pid, timeout, reaped=True):
            logger.warning("postmaster %d is still a zombie; its parent does not reap it", pid)


async def _wait_gone(pid: int, timeout: float, *, reaped: bool = False) -> bool:
    """Poll until pid is dead (reaped=False: a zombie counts) or gone from the process table."""
    def present() -> bool:
        return datadir.process_state(pid) is not None if reaped else process_alive(pid)

    return await async_wait_until(lambda: not present(), timeout)
