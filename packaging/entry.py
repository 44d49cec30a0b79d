"""Entry script of the single-file build: the frozen executable is `raftpg` itself."""

import sys

from raftpg.cli.main import main

sys.exit(main())
