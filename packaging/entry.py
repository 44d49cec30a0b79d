"""Entry script of the single-file build: the frozen executable is `raftpg` itself.

`raftpg fence ...` (the fence process, started on every primary) is dispatched before anything
else is imported: through raftpg.cli.main it would load the command line, the configuration
and YAML, about 17 MiB of RSS it never uses in all the time it guards PostgreSQL.
"""

import sys

from raftpg.fence.protocol import SUBCOMMAND

if sys.argv[1:2] == [SUBCOMMAND]:
    from raftpg.fence.process import main as fence_main

    sys.exit(fence_main(sys.argv[2:]))

from raftpg.cli.main import main

sys.exit(main())
