"""raftpg.cli.ctl: `raftpg ctl`, the operator's tool (like patronictl) over the REST API only:
verbs (commands.py, actions.py, rolling*.py), the API client and session, the view model and tables."""
