"""Physical replication slots on the primary: one per member, so WAL a standby still needs is
kept (bounded by max_slot_wal_keep_size), and slots of departed members are dropped."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from raftpg.postgres.lsn import parse_optional_lsn
from raftpg.postgres.session import PgSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlotInfo:
    name: str
    slot_type: str  # "physical" or "logical"
    active: bool
    restart_lsn: int | None
    wal_status: str | None  # "reserved", "extended", "unreserved", "lost"


@dataclass(frozen=True)
class SlotChanges:
    created: tuple[str, ...]
    dropped: tuple[str, ...]


_LIST = (
    "SELECT slot_name, slot_type, active, restart_lsn::text, wal_status"
    " FROM pg_replication_slots ORDER BY slot_name"
)
# The same listing that, on a standby, also advances the slots it keeps for the other members
# to where it has replayed, no further back (they must not hold WAL it no longer needs): one
# round trip every HA cycle instead of two. restart_lsn is the one before the advance.
_LIST_AND_ADVANCE = (
    "SELECT slot_name, slot_type, active, restart_lsn::text, wal_status,"
    " CASE WHEN slot_type = 'physical' AND NOT active AND restart_lsn < pg_last_wal_replay_lsn()"
    " THEN pg_replication_slot_advance(slot_name, pg_last_wal_replay_lsn()) IS NOT NULL END"
    " FROM pg_replication_slots ORDER BY slot_name"
)


async def list_slots(session: PgSession, timeout: float, *, advance: bool = False) -> tuple[SlotInfo, ...]:
    """All slots; advance=True (standbys only) also advances the inactive physical ones (_LIST_AND_ADVANCE)."""
    rows = await session.fetch(_LIST_AND_ADVANCE if advance else _LIST, timeout=timeout)
    return tuple(
        SlotInfo(name, slot_type, active, parse_optional_lsn(restart), wal_status)
        for name, slot_type, active, restart, wal_status, *_ in rows
    )


async def ensure_slots(
    session: PgSession, wanted: Iterable[str], keep: Iterable[str], timeout: float, *, advance: bool = False
) -> SlotChanges:
    """Create missing physical slots in wanted; drop physical slots in neither wanted nor keep;
    on a standby (advance=True) first advance the inactive ones (list_slots).

    Logical slots are never touched; an active slot cannot be dropped and is left for the next
    call. New slots reserve WAL at once, so a member cloning right now loses nothing.
    """
    wanted_set = set(wanted)
    spared = wanted_set | set(keep)
    existing = {slot.name: slot for slot in await list_slots(session, timeout, advance=advance)}
    created: list[str] = []
    dropped: list[str] = []
    for name in sorted(wanted_set - existing.keys()):
        await session.fetch("SELECT pg_create_physical_replication_slot(%s, true)", (name,), timeout=timeout)
        logger.info("created replication slot %s", name)
        created.append(name)
    for name, slot in sorted(existing.items()):
        if slot.slot_type != "physical" or name in spared:
            continue
        if slot.active:
            logger.info("not dropping replication slot %s yet: it is in use", name)
            continue
        await session.fetch("SELECT pg_drop_replication_slot(%s)", (name,), timeout=timeout)
        logger.info("dropped replication slot %s: no member needs it", name)
        dropped.append(name)
    return SlotChanges(tuple(created), tuple(dropped))
