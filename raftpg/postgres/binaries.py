"""Where this host's PostgreSQL programs are (pg_ctl, initdb, ...), for settings that leave
postgresql.bin_dir unset, the sample configuration and the local test clusters."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

PG_LIB_ROOT = Path("/usr/lib/postgresql")
"""Where Debian's packages install each major version (<root>/<major>/bin)."""


def discover_bin_dir() -> Path | None:
    """Where PostgreSQL's programs are: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            result = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=5, check=True
            )
            candidate = Path(result.stdout.strip())
            if result.stdout.strip() and (candidate / "pg_ctl").is_file():
                return candidate
        except (OSError, subprocess.SubprocessError) as exc:
            logger.debug("pg_config --bindir failed: %s", exc)
    found = [path for path in PG_LIB_ROOT.glob("*/bin") if (path / "pg_ctl").is_file()]
    if not found:
        return None
    return max(found, key=lambda path: tuple(int(n) for n in re.findall(r"\d+", path.parent.name)))
