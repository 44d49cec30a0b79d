"""raftpg.fence: the fence process that stops PostgreSQL when the lease runs out (process.py),
the daemon's client for it (client.py) and what they say over the FIFO (protocol.py).

Kept free of imports on purpose: the fence process imports this package and must start small.
"""
