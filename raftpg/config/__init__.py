"""raftpg.config: YAML + RAFTPG_* environment (reading.py) validated (validation.py, sections.py) into
frozen settings (values.py, model.py; dynamic.py the cluster-wide part in Raft, witness.py, sample.py)."""

from raftpg.config.dynamic import (
    ASYNC_START_TIMEOUT,
    CLUSTER_WIDE_PARAMETERS,
    MIN_TTL,
    RAFTPG_OWNED_PARAMETERS,
    DynamicConfig,
    validate_dynamic_config,
)
from raftpg.config.model import (
    CALLBACK_EVENTS,
    BootstrapSettings,
    LogSettings,
    PostgresSettings,
    RaftSettings,
    RestApiSettings,
    Settings,
    Tags,
    WatchdogSettings,
)
from raftpg.config.reading import ENV_PREFIX, load_member_settings, load_settings, parse_member_settings, parse_settings
from raftpg.config.sample import generate_raft_password, sample_config
from raftpg.config.sections import DOCS_RAFT_PASSWORD, MIN_RAFT_PASSWORD_LENGTH
from raftpg.config.values import Address, Auth, ConfigError
from raftpg.config.witness import WITNESS_KIND, WitnessSettings

__all__ = [
    "ASYNC_START_TIMEOUT",
    "CALLBACK_EVENTS",
    "CLUSTER_WIDE_PARAMETERS",
    "DOCS_RAFT_PASSWORD",
    "ENV_PREFIX",
    "MIN_RAFT_PASSWORD_LENGTH",
    "MIN_TTL",
    "RAFTPG_OWNED_PARAMETERS",
    "WITNESS_KIND",
    "Address",
    "Auth",
    "BootstrapSettings",
    "ConfigError",
    "DynamicConfig",
    "LogSettings",
    "PostgresSettings",
    "RaftSettings",
    "RestApiSettings",
    "Settings",
    "Tags",
    "WatchdogSettings",
    "WitnessSettings",
    "generate_raft_password",
    "load_member_settings",
    "load_settings",
    "parse_member_settings",
    "parse_settings",
    "sample_config",
    "validate_dynamic_config",
]
