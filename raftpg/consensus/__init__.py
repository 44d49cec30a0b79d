"""The replicated cluster state on pysyncobj: lease, members, config, failover, sync, history.

Knows nothing of PostgreSQL. The layers above read `RaftNode.snapshot()` and change the state
only through RaftNode's operations, each a compare-and-set or an idempotent command.
"""

from raftpg.consensus.errors import ConsensusError, NoQuorum, OutcomeUnknown
from raftpg.consensus.model import Lease, RaftStatus, Snapshot
from raftpg.consensus.node import RaftNode
from raftpg.consensus.settings import TIMING_KEYS, derive_key, validate_timings
from raftpg.consensus.state import HISTORY_LIMIT, SCHEMA

__all__ = [
    "HISTORY_LIMIT",
    "SCHEMA",
    "TIMING_KEYS",
    "ConsensusError",
    "Lease",
    "NoQuorum",
    "OutcomeUnknown",
    "RaftNode",
    "RaftStatus",
    "Snapshot",
    "derive_key",
    "validate_timings",
]
