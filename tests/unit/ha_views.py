"""Hand-built views for the HA core's table tests (decide, step): a 3-member cluster, node1 holding."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from raftpg.config import DynamicConfig, Tags
from raftpg.ha.actions import Action
from raftpg.ha.core import step
from raftpg.ha.memory import Memory
from raftpg.ha.observations import Observation
from raftpg.ha.views import ClusterView, LeaseView, LocalView, MemberView, PeerPosition, PgRole, SyncState
from raftpg.postgres.datadir import DataDirState

SYSID = "7000000000000000001"
NOW = 1000.0


def lease(holder: str | None = "node1", instance: str | None = "i-node1", expired: bool = False,
          **kw: Any) -> LeaseView:
    return LeaseView(holder=holder, instance_id=instance, version=kw.pop("version", 3),
                     revision=kw.pop("revision", 40), ttl=5.0, expired=expired, **kw)


def member(name: str, role: str = "replica", lsn: int | None = 100, timeline: int | None = 1,
           fresh: bool = True, state: str = "running", **tags: Any) -> MemberView:
    return MemberView(name=name, instance_id=f"i-{name}", api_url=f"http://{name}:8008", host=name,
                      port=5432, role=role, state=state, timeline=timeline, lsn=lsn, tags=Tags(**tags),
                      fresh=fresh)


def cluster(the_lease: LeaseView | None = None, members: list[MemberView] | None = None,
            sysid: str | None = SYSID, peers: list[PeerPosition] | None = None, **config: Any) -> ClusterView:
    failover = config.pop("failover", None)
    sync = config.pop("sync", SyncState())
    members = members if members is not None else [member("node1", role="primary", lsn=200),
                                                   member("node2"), member("node3")]
    return ClusterView(
        system_identifier=sysid,
        lease=the_lease if the_lease is not None else lease(),
        members=MappingProxyType({m.name: m for m in members}),
        config=DynamicConfig(**config),
        failover=failover,
        sync=sync,
        peers=MappingProxyType({p.name: p for p in peers or []}),
    )


def local(name: str = "node2", role: PgRole = PgRole.REPLICA, **kw: Any) -> LocalView:
    defaults: dict[str, Any] = dict(
        instance_id=f"i-{name}", now=NOW, wall_now=1_700_000_000.0, tags=Tags(),
        data_dir=DataDirState.INITIALIZED, system_identifier=SYSID, timeline=1, lsn=200, replay_lsn=200,
        upstream="node1",
    )
    defaults.update(kw)
    return LocalView(name=name, role=role, **defaults)


def holder(role: PgRole = PgRole.PRIMARY, **kw: Any) -> LocalView:
    kw.setdefault("lease_deadline", NOW + 4)
    return local("node1", role=role, upstream=None, **kw)


def run_story(story: Sequence[tuple[Observation, float, Sequence[type[Action]]]],
              memory: Memory | None = None) -> tuple[Memory, list[Action]]:
    """Feed core.step one observation after another (each at its time) and check, at every step,
    the kinds of actions it answers with. Returns the memory and the actions of the last step."""
    memory = memory if memory is not None else Memory()
    actions: list[Action] = []
    for number, (observation, now, expected) in enumerate(story, 1):
        memory, actions = step(memory, observation, now)
        got = [type(a) for a in actions]
        assert got == list(expected), f"step {number} ({type(observation).__name__}): {actions}"
    return memory, actions
