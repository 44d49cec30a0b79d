"""raftpg.postgres: one local PostgreSQL — initdb, clone, start/stop/promote, rewind (instance.py),
its configuration (conf.py), status and data directory. Knows nothing of Raft; imported by ha/, api/
and cli/ only. The fence that guards the postmaster lives in raftpg.fence.
"""
