"""Why a consensus operation could not give a yes/no answer."""


class ConsensusError(Exception):
    """The Raft replica could not carry out the request (stopped, bind failure, denied)."""


class OutcomeUnknown(ConsensusError):
    """The command may or may not have committed; re-reading the local replica did not tell.

    Callers must treat it as "not done" for anything that grants rights (a renewal that is not
    known to have committed does not move the lease deadline).
    """


class NoQuorum(ConsensusError):
    """No Raft leader accepted the command before the timeout; it was never proposed."""
