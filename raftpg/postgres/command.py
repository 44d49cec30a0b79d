"""Running PostgreSQL programs from asyncio with a hard time limit.

A program that overruns its timeout is SIGKILLed (and reaped) so a hung pg_ctl or pg_rewind
can never stall the HA loop; the caller gets CommandTimeout.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from raftpg.postgres.errors import CommandFailed, CommandTimeout

logger = logging.getLogger(__name__)

_REAP_TIMEOUT = 5.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def command_env(*, c_locale: bool = False, password: str | None = None) -> dict[str, str]:
    """Our environment without PG* variables (they would redirect programs elsewhere).

    c_locale=True for programs whose output we parse; password goes in PGPASSWORD, never argv.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    if c_locale:
        env["LC_ALL"] = "C"
    if password is not None:
        env["PGPASSWORD"] = password
    return env


async def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> CommandResult:
    """Run argv to completion within timeout; raise CommandFailed on non-zero exit if check."""
    args = tuple(argv)
    logger.debug("running %s (timeout %.1fs)", " ".join(args), timeout)
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else command_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill(proc)
        try:
            await asyncio.wait_for(proc.wait(), _REAP_TIMEOUT)
        except TimeoutError:
            logger.error("%s (pid %d) did not exit after SIGKILL", args[0], proc.pid)
        raise CommandTimeout(f"{args[0]} did not finish within {timeout:.1f}s and was killed") from None
    except BaseException:
        _kill(proc)
        raise
    assert proc.returncode is not None
    result = CommandResult(
        args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )
    if check and result.returncode != 0:
        raise CommandFailed(args, result.returncode, result.output)
    return result


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
