"""The dynamic configuration in force on a member: the version in Raft, parsed once per version,
or the bootstrap one while Raft holds none (or an invalid one, which is logged)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from raftpg.config.dynamic import DynamicConfig
from raftpg.config.values import ConfigError

logger = logging.getLogger(__name__)


class ConfigInForce:
    def __init__(self, bootstrap: DynamicConfig) -> None:
        self._bootstrap = bootstrap
        self._parsed: tuple[int, DynamicConfig] | None = None

    def get(self, version: int, stored: Mapping[str, Any]) -> DynamicConfig:
        """`stored` is the configuration Raft holds at `version` (empty: none yet)."""
        cached = self._parsed
        if cached is not None and cached[0] == version:
            return cached[1]
        config = self._bootstrap
        if stored:
            try:
                config = DynamicConfig.from_dict(stored)
            except ConfigError as exc:
                logger.error("dynamic configuration version %s in Raft is invalid (%s); using the bootstrap one",
                             version, exc)
        self._parsed = (version, config)
        return config
