"""PostgreSQL's server log (pg_ctl -l): where a failed start explains itself."""

from pathlib import Path

_TAIL_LINES = 30


def log_size(path: Path) -> int:
    """Where the next start's messages will begin."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_tail(path: Path, offset: int) -> str:
    """The last lines written since offset, for an error message."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no server log at {path})"
    return f"last lines of {path}:\n" + "\n".join(lines[-_TAIL_LINES:])
