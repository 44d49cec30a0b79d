"""Errors of the PostgreSQL layer: one base class so the HA loop can catch "PostgreSQL said no"."""


class PostgresError(Exception):
    """An operation on the local PostgreSQL failed; the message says what and why."""


class CommandFailed(PostgresError):
    """A PostgreSQL program exited non-zero; carries its output for the log."""

    def __init__(self, argv: tuple[str, ...], returncode: int, output: str) -> None:
        super().__init__(f"{argv[0]} exited with {returncode}: {output.strip()[-2000:]}")
        self.argv = argv
        self.returncode = returncode
        self.output = output


class CommandTimeout(PostgresError):
    """A PostgreSQL program did not finish in time and was killed."""


class StartFailed(PostgresError):
    """pg_ctl start failed; the message carries the tail of the server log."""


class QueryFailed(PostgresError):
    """A query could not be run: no connection, an SQL error or a timeout."""
