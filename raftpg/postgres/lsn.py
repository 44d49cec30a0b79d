"""WAL positions: PostgreSQL prints them as 'X/Y' (two hex halves); raftpg compares them as int."""


def parse_lsn(text: str) -> int:
    high, sep, low = text.strip().partition("/")
    if not sep or not high or not low:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    if value < 0:
        raise ValueError(f"negative LSN: {value}")
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def parse_optional_lsn(text: str | None) -> int | None:
    return None if text is None else parse_lsn(text)
