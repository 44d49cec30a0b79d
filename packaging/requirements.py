"""Print raftpg's runtime requirements from pyproject.toml, one per line, for the build venv.

The single-file build installs exactly these (not raftpg itself: PyInstaller reads raftpg from
the checkout), so `make dist` and `pip install .` can never disagree about dependencies.
"""

import sys
import tomllib

with open(sys.argv[1], "rb") as handle:
    print("\n".join(tomllib.load(handle)["project"]["dependencies"]))
