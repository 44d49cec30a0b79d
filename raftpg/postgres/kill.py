"""Re-exports raftpg.fence.kill for postgres/instance.py, postgres/datadir.py and cli/launcher.py
until their import lines name raftpg.fence.kill (the kill lives with the fence, which must not
import raftpg.postgres); delete this file then."""

from raftpg.fence.kill import children_of, kill_postmaster_tree, stat_fields

__all__ = ["children_of", "kill_postmaster_tree", "stat_fields"]
