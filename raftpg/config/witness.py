"""A witness member's settings (`witness: true`): a Raft vote and a REST API, no PostgreSQL.

Two database hosts plus one small machine then keep a Raft majority through the loss of either
database host. A witness file carries only what a witness uses; the database-only sections are
refused rather than ignored, so a file cannot silently mean something else than it says (a
database member's file with `witness: true` added by mistake would otherwise stop managing its
PostgreSQL without a word).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raftpg.config.dynamic import parse_dynamic
from raftpg.config.model import BootstrapSettings, LogSettings, RaftSettings, RestApiSettings, Tags, WatchdogSettings
from raftpg.config.sections import (
    RAFT_KEYS,
    RESTAPI_KEYS,
    cross_checks,
    parse_log,
    parse_name,
    parse_raft,
    parse_restapi,
)
from raftpg.config.validation import Invalid, Section, need

WITNESS_KIND = "witness"
"""The `kind` of a witness's member record in Raft."""
POSTGRES_KIND = "postgres"
"""The `kind` of a database member's record; a record without `kind` (older releases) is one too."""

WITNESS_ROLE = "witness"
"""The role a witness publishes and answers /patroni with."""

WITNESS_TAGS = Tags(nofailover=True, failover_priority=0, noloadbalance=True, nosync=True)
"""What a witness is to the others: never a failover or synchronous candidate, never a read target."""

_DATABASE_ONLY = {
    "postgresql": "a witness runs no PostgreSQL",
    "tags": "tags steer failover, synchronous replication and load balancing, which a witness takes no part in",
    "watchdog": "the watchdog guards a primary's PostgreSQL, which a witness never runs",
}


@dataclass(frozen=True)
class WitnessSettings:
    """The settings of a witness member; `bootstrap.dcs` must match the database members' (the
    Raft timings derive from its ttl)."""

    scope: str
    name: str
    raft: RaftSettings
    restapi: RestApiSettings
    bootstrap: BootstrapSettings
    log: LogSettings
    source: Path | None = None
    warnings: tuple[str, ...] = ()

    @property
    def tags(self) -> Tags:
        return WITNESS_TAGS


def parse_witness(root: Section) -> WitnessSettings | None:
    """The witness settings in `root` (the whole file, environment applied), or None with the
    problems recorded in root's report."""
    for key, why in _DATABASE_ONLY.items():
        if key in root.data:
            root.problem(key, f"not allowed with witness: true ({why}); remove this section, or set "
                              "witness: false for a database member")
    boot = root.section("bootstrap", ("dcs", "initdb"))
    if "initdb" in boot.data:
        boot.problem("initdb", "not allowed with witness: true (a witness runs no initdb)")
    dcs = parse_dynamic(root.report, boot.key("dcs"), boot.raw("dcs"))
    scope = parse_name(root, "scope")
    name = parse_name(root, "name")
    raft = parse_raft(root.section("raft", RAFT_KEYS))
    restapi = parse_restapi(root.section("restapi", RESTAPI_KEYS))
    log = parse_log(root.section("log", ("level", "format")))
    cross_checks(root.report, name, raft, restapi, None, WITNESS_TAGS, WatchdogSettings(), dcs)
    if root.report.problems:
        return None
    try:
        return WitnessSettings(scope=need(scope), name=need(name), raft=need(raft), restapi=need(restapi),
                               bootstrap=BootstrapSettings(dcs=dcs, initdb=()), log=log,
                               warnings=tuple(root.report.warnings))
    except Invalid:  # a reader returned None without recording why: a bug in this module
        raise AssertionError("configuration rejected without a problem recorded") from None
