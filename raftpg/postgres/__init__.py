"""raftpg.postgres: one local PostgreSQL (instance.py), its configuration (conf.py) and the fence
(fence.py). Knows nothing of Raft; imported by ha/, api/ and cli/ only.

Kept empty of imports on purpose: the fence process imports this package and must start small.
"""
