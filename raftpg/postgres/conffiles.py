"""The files raftpg writes into a data directory: its configuration (atomically, mode 0600) and the
standby and recovery signal files; saved and restored around pg_rewind, which overwrites them."""

import contextlib
import enum
import logging
import os
from collections.abc import Mapping

from raftpg.config import Address, PostgresSettings
from raftpg.postgres import conf

logger = logging.getLogger(__name__)

STANDBY_SIGNAL = "standby.signal"
RECOVERY_SIGNAL = "recovery.signal"
# Files pg_rewind overwrites with the source's copies; ours are put back afterwards.
_CONFIG_FILES = ("postgresql.conf", conf.BASE_CONF, "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")


class Keep(enum.Enum):
    """reload(): keep the upstream (primary_conninfo, primary_slot_name) now in postgresql.conf."""

    KEEP = "keep"


KEEP = Keep.KEEP


class ConfFiles:
    def __init__(self, settings: PostgresSettings, member_name: str) -> None:
        self.settings = settings
        self.member_name = member_name
        self.data_dir = settings.data_dir

    def pg_hba(self) -> str:
        return conf.render_pg_hba(self.settings.superuser, self.settings.replication, self.settings.pg_hba)

    def write(
        self, parameters: Mapping[str, str], upstream: Address | None, slot: str | None, locked: bool = False
    ) -> None:
        conninfo = None
        if upstream is not None:
            conninfo = conf.primary_conninfo(upstream, self.settings.replication, self.member_name)
        self._write_all(parameters, conninfo, slot if upstream is not None else None, locked)

    def reconfigure(
        self, parameters: Mapping[str, str], upstream: Address | Keep | None, slot: str | Keep | None
    ) -> None:
        current_conninfo, current_slot = None, None
        with contextlib.suppress(FileNotFoundError):
            current_conninfo, current_slot = conf.read_standby_settings(
                (self.data_dir / "postgresql.conf").read_text()
            )
        if upstream is KEEP:
            conninfo = current_conninfo
        elif upstream is None:
            conninfo = None
        else:
            conninfo = conf.primary_conninfo(upstream, self.settings.replication, self.member_name)
        new_slot = current_slot if slot is KEEP else slot
        self._write_all(parameters, conninfo, new_slot if conninfo is not None else None)

    def _write_all(self, parameters: Mapping[str, str], conninfo: str | None, slot: str | None,
                          locked: bool = False) -> None:
        self.adopt_base_conf()
        text = conf.render_postgresql_conf(parameters, primary_conninfo=conninfo, primary_slot_name=slot)
        self.write_file("postgresql.conf", text)
        hba = conf.render_locked_pg_hba(self.settings.superuser) if locked else self.pg_hba()
        self.write_file("pg_hba.conf", hba)

    def adopt_base_conf(self) -> None:
        """Keep a postgresql.conf raftpg did not write (initdb's) as the included base file."""
        current = self.data_dir / "postgresql.conf"
        base = self.data_dir / conf.BASE_CONF
        if base.exists() or not current.exists():
            return
        with current.open() as handle:
            if handle.readline().startswith(conf.MANAGED_MARKER):
                return
        current.rename(base)
        logger.info("kept the original postgresql.conf as %s", base.name)

    def write_file(self, name: str, text: str) -> None:
        """Atomic replace, mode 0600 (postgresql.conf holds the replication password)."""
        target = self.data_dir / name
        tmp = target.with_name(f".{name}.raftpg.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)

    def set_standby_signal(self, standby: bool) -> None:
        signal_file = self.data_dir / STANDBY_SIGNAL
        (self.data_dir / RECOVERY_SIGNAL).unlink(missing_ok=True)
        if standby:
            signal_file.touch(mode=0o600)
        else:
            signal_file.unlink(missing_ok=True)

    def save(self) -> dict[str, bytes]:
        """The files pg_rewind overwrites with the source's copies, to put ours back afterwards."""
        saved = {}
        for name in _CONFIG_FILES:
            with contextlib.suppress(FileNotFoundError):
                saved[name] = (self.data_dir / name).read_bytes()
        return saved

    def restore(self, saved: Mapping[str, bytes]) -> None:
        for name, content in saved.items():
            path = self.data_dir / name
            with contextlib.suppress(FileNotFoundError):
                if path.read_bytes() == content:
                    continue
            path.write_bytes(content)
            path.chmod(0o600)
            logger.info("restored our %s after pg_rewind", name)
