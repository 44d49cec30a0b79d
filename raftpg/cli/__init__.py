"""raftpg.cli: the `raftpg` command — run (the daemon's wiring: daemon.py, backend.py), ctl/ (the
operator's tool), demo, certs, config, rejoin and systemd helpers; main.py builds the parser."""
