"""Giving a member its data directory: initdb for the first primary, pg_basebackup for a clone,
and the replication role a fresh primary creates.

PostgresInstance checks first that the directory is missing or empty and keeps the clone marker;
these functions do the work. A clone is marked standby at once (DESIGN rule 1).
"""

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from psycopg import sql
from psycopg.conninfo import make_conninfo

from raftpg.config import Address, PostgresSettings
from raftpg.postgres.command import command_env, run_command
from raftpg.postgres.conffiles import ConfFiles
from raftpg.postgres.datadir import DataDirState
from raftpg.postgres.errors import PostgresError
from raftpg.postgres.session import PgSession

logger = logging.getLogger(__name__)

# initdb options raftpg sets itself.
_OWNED_INITDB_OPTIONS = ("-D", "--pgdata", "-U", "--username", "--pwfile", "-W", "--pwprompt", "-A", "--auth")


def make_data_dir(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)


async def initdb(settings: PostgresSettings, files: ConfFiles, options: Sequence[str], timeout: float) -> None:
    """Create a new cluster; the superuser gets its password and SCRAM auth from the start."""
    for option in options:
        if option.split("=", 1)[0] in _OWNED_INITDB_OPTIONS or option.startswith("--auth"):
            raise ValueError(f"initdb option {option!r} is set by raftpg")
    data_dir = settings.data_dir
    make_data_dir(data_dir)
    su = settings.superuser
    argv = [str(settings.bin_dir / "initdb"), "-D", str(data_dir), "--username", su.username]
    # Without a password the daemon reaches the superuser by peer authentication.
    argv += ["--auth-local=" + ("scram-sha-256" if su.password else "peer"), "--auth-host=scram-sha-256"]
    pwfile = None
    try:
        if su.password:
            fd, pwfile = tempfile.mkstemp(prefix=".raftpg-pw-", dir=data_dir.parent)  # mode 0600
            with os.fdopen(fd, "w") as handle:
                handle.write(su.password + "\n")
            argv.append(f"--pwfile={pwfile}")
        await run_command([*argv, *options], timeout=timeout)
    finally:
        if pwfile is not None:
            os.unlink(pwfile)
    await asyncio.to_thread(files.adopt_base_conf)
    await asyncio.to_thread(files.write_file, "pg_hba.conf", files.pg_hba())
    logger.info("initdb created %s", data_dir)


async def bootstrap_roles(settings: PostgresSettings, session: PgSession, timeout: float) -> None:
    """Create (or update) the replication role on a fresh primary; idempotent."""
    repl = settings.replication
    if repl.username == settings.superuser.username:
        return
    password: sql.Composable = sql.SQL("NULL")
    if repl.password:
        verifier = await session.encrypt_password(repl.username, repl.password, timeout=timeout)
        password = sql.Literal(verifier)
    exists = await session.fetch("SELECT 1 FROM pg_roles WHERE rolname = %s", (repl.username,), timeout=timeout)
    statement = sql.SQL("{} ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
        sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(repl.username), password
    )
    await session.fetch(statement, timeout=timeout)
    logger.info("replication role %s %s", repl.username, "updated" if exists else "created")


async def basebackup(settings: PostgresSettings, files: ConfFiles, member_name: str, source: Address,
                     timeout: float, state: DataDirState, slot: str | None) -> None:
    """Clone the data directory (made, missing or empty: `state`) from source, as a standby; a
    failed copy is removed and the directory left as it was."""
    data_dir = settings.data_dir
    make_data_dir(data_dir)
    repl = settings.replication
    conninfo = make_conninfo("", host=source.host, port=source.port, user=repl.username,
                             application_name=member_name, connect_timeout=5)
    argv = [str(settings.bin_dir / "pg_basebackup"), "-D", str(data_dir), "-d", conninfo]
    argv += ["-X", "stream", "-c", "fast", "-w", "--no-manifest"]
    if slot is not None:
        argv += ["-S", slot]
    try:
        await run_command(argv, timeout=timeout, env=command_env(password=repl.password or None))
    except PostgresError:
        # Our own half-made copy holds no data worth keeping; restore the previous state.
        logger.error("basebackup from %s failed; removing the partial copy in %s", source, data_dir)
        await asyncio.to_thread(shutil.rmtree, data_dir, True)
        if state is DataDirState.EMPTY:
            make_data_dir(data_dir)
        raise
    await asyncio.to_thread(files.adopt_base_conf)
    await asyncio.to_thread(files.set_standby_signal, True)
    logger.info("cloned %s from %s%s", data_dir, source, f" using slot {slot}" if slot else "")
