"""The one HTTP client of raftpg: member to member, ctl to the API, launcher and benchmarks.

Built from the `restapi` settings (cluster CA, this node's certificate as client certificate).
"""
