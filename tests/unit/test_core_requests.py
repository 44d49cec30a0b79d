"""The HA core's answers to an operator (restart, reload, reinit, scheduled restart), the due
configuration reload, bootstrap bookkeeping, and the operator's cue to reinitialize."""

from __future__ import annotations

from dataclasses import replace

import pytest

from raftpg.config import DynamicConfig
from raftpg.ha import actions as A
from raftpg.ha.core import complete, needs_reinit, step
from raftpg.ha.memory import Memory, PgState, RewindFailure
from raftpg.ha.observations import (
    BootstrapDone,
    BootstrapFailed,
    BootstrapStarting,
    ConfigApplied,
    CycleStarted,
    DataMovedAside,
    Observation,
    OperatorRequest,
    Reinitialized,
    RequestKind,
    RestartScheduled,
)
from raftpg.ha.views import LocalView, PgRole
from raftpg.postgres.datadir import DataDirState
from tests.unit.ha_views import NOW, cluster, holder, local, run_story

pytestmark = pytest.mark.unit

WALL = 1_700_000_000.0


@pytest.mark.parametrize(
    ("kind", "the_local", "expected"),
    [
        (RequestKind.RELOAD, local(), [A.ReloadPostgres]),
        (RequestKind.REINITIALIZE, local(), [A.Reinitialize]),
        (RequestKind.REINITIALIZE, holder(), []),  # never the primary
        (RequestKind.RESTART, holder(), [A.RestartPostgres]),
        (RequestKind.RESTART, holder(lease_deadline=NOW), []),  # a primary whose lease ran out: not restarted
        (RequestKind.RESTART, holder(lease_deadline=None), []),
        (RequestKind.RESTART, local(), [A.RestartPostgres]),
        (RequestKind.RESTART, local(role=PgRole.STOPPED), []),
    ],
)
def test_operator_requests_go_through_the_core(kind: RequestKind, the_local: LocalView,
                                               expected: list[type]) -> None:
    _, actions = run_story([(OperatorRequest(kind, the_local), NOW, expected)], Memory(upstream="node1"))
    if isinstance(actions[-1] if actions else None, A.RestartPostgres):
        restart = actions[-1]
        assert isinstance(restart, A.RestartPostgres)
        assert (restart.primary, restart.upstream) == ((True, None) if the_local.name == "node1" else (False, "node1"))


def test_scheduled_restart_runs_once_when_due_and_can_be_cancelled() -> None:
    early = local(wall_now=WALL - 1)
    due = local(wall_now=WALL)
    memory, _ = run_story([
        (RestartScheduled(WALL), NOW, []),
        (CycleStarted(cluster(), early), NOW, []),
        (CycleStarted(cluster(), due), NOW + 1, [A.RestartPostgres]),
        (CycleStarted(cluster(), due), NOW + 2, []),
        (RestartScheduled(WALL), NOW + 2, []),
        (RestartScheduled(None), NOW + 2, []),
        (CycleStarted(cluster(), due), NOW + 3, []),
    ])
    assert memory.scheduled_restart is None


def test_a_new_configuration_version_is_reloaded_once_while_postgres_runs() -> None:
    run_story([
        (CycleStarted(cluster(), local(), config_version=3, pg_running=False), NOW, []),
        (CycleStarted(cluster(), local(), config_version=3, pg_running=True), NOW, [A.ApplyConfig]),
        (ConfigApplied(3), NOW, []),
        (CycleStarted(cluster(), local(), config_version=3, pg_running=True), NOW, []),
        (CycleStarted(cluster(), local(), config_version=4, pg_running=True), NOW, [A.ApplyConfig]),
    ])


def test_bootstrap_bookkeeping() -> None:
    memory, _ = run_story([(BootstrapStarting(), NOW, []), (BootstrapDone(), NOW, [])], Memory(sync_names="x"))
    assert (memory.state, memory.sync_names) == (PgState.RUNNING, "")
    memory, _ = run_story([(BootstrapFailed(), NOW, [])])
    assert memory.bootstrap_failed
    memory, _ = run_story([(DataMovedAside(), NOW, [])], memory)
    assert not memory.bootstrap_failed


HOPELESS = RewindFailure("node1", 3, NOW, source_unreachable=False, hopeless=True)


@pytest.mark.parametrize(
    ("memory", "data_dir", "config", "cue"),
    [
        (Memory(rewind_failure=HOPELESS), DataDirState.INITIALIZED, DynamicConfig(), True),
        (Memory(), DataDirState.INITIALIZED, DynamicConfig(), False),
        (Memory(rewind_failure=replace(HOPELESS, hopeless=False)), DataDirState.INITIALIZED, DynamicConfig(), False),
        (Memory(rewind_failure=HOPELESS), DataDirState.EMPTY, DynamicConfig(), False),
        (Memory(rewind_failure=HOPELESS), DataDirState.INITIALIZED,
         DynamicConfig(remove_data_directory_on_rewind_failure=True), False),
        (Memory(rewind_failure=HOPELESS), DataDirState.INITIALIZED, DynamicConfig(synchronous_mode="on"), False),
    ],
)
def test_needs_reinit_cue(memory: Memory, data_dir: DataDirState, config: DynamicConfig, cue: bool) -> None:
    text = needs_reinit(memory, local(data_dir=data_dir), config, "demo")
    assert (text is not None) is cue
    assert text is None or "raftpg ctl reinit demo node2" in text


def test_reinitialized_forgets_the_failed_rewind() -> None:
    memory, _ = run_story([(Reinitialized(), NOW, [])], Memory(rewind_failure=HOPELESS))
    assert memory.rewind_failure is None


def test_complete_adds_what_the_node_remembers() -> None:
    memory = Memory(upstream="node3", rewound=True, needs_rewind=True, not_streaming_since=NOW - 11,
                    rewind_failure=HOPELESS, sync_switch_lsn=7, pg_down_since=NOW - 1)
    view = complete(memory, cluster(), local(was_primary=True))
    assert (view.upstream, view.was_primary, view.needs_rewind, view.standby_stuck) == ("node3", False, True, True)
    assert (view.rewind_failed, view.rewind_hopeless, view.sync_switch_lsn, view.pg_down_since) == (
        True, True, 7, NOW - 1)  # it failed against node1's lease version 3 just now: no retry yet


def test_an_observation_the_core_has_no_rule_for_is_a_bug() -> None:
    with pytest.raises(AssertionError, match="no rule"):
        step(Memory(), Observation(), NOW)
