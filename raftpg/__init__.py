"""raftpg: PostgreSQL high availability on an embedded Raft log, one process per node."""

__version__ = "0.1.0"
