"""User callbacks on a real cluster: every member runs a recording script for every event
(postgresql.callbacks in its local config), and a switchover makes the new primary report
on_role_change primary and the old one a change towards replica, with Patroni's arguments
(ACTION ROLE SCOPE)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from raftpg.config import CALLBACK_EVENTS
from raftpg.devcluster import LocalCluster
from raftpg.poll import wait_for
from tests.cluster.conftest import HEALTHY_TIMEOUT, scratch_dir

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

RECORDER = '#!/bin/sh\n# $1: member name, then ACTION ROLE SCOPE\necho "$2 $3 $4" >> "$(dirname "$0")/$1.calls"\n'


def calls(base: Path, name: str) -> list[str]:
    path = base / f"{name}.calls"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[LocalCluster, Path]]:
    base = scratch_dir("raftpg-test_callbacks-")
    script = base / "record.sh"
    script.write_text(RECORDER)
    script.chmod(0o755)
    cluster = LocalCluster(base_dir=base / "cluster", scope="cbdemo")
    for node in cluster.nodes.values():
        config = yaml.safe_load(node.config_path.read_text())
        config["postgresql"]["callbacks"] = {event: ["/bin/sh", str(script), node.name] for event in CALLBACK_EVENTS}
        config["postgresql"]["callback_timeout"] = 10
        node.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    cluster.start()
    try:
        cluster.wait_healthy(HEALTHY_TIMEOUT)
        yield cluster, base
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_switchover_fires_role_change_callbacks(recorded: tuple[LocalCluster, Path]) -> None:
    cluster, base = recorded
    old = cluster.wait_healthy(HEALTHY_TIMEOUT)
    candidate = next(name for name in cluster.nodes if name != old)
    wait_for(lambda: "on_start replica cbdemo" in calls(base, candidate), 30, f"{candidate}'s on_start callback")
    before = {name: len(calls(base, name)) for name in cluster.nodes}
    status, body = cluster.api_request(old, "POST", "/switchover", {"leader": old, "candidate": candidate})
    assert status == 200, (status, body)
    assert cluster.wait_primary(HEALTHY_TIMEOUT, exclude=old) == candidate
    wait_for(lambda: "on_role_change primary cbdemo" in calls(base, candidate)[before[candidate]:], 30,
             f"on_role_change primary on {candidate}")
    wait_for(lambda: "on_start replica cbdemo" in calls(base, old)[before[old]:], 60, f"{old} back as a replica")
    old_calls = calls(base, old)[before[old]:]
    assert "on_role_change replica cbdemo" in old_calls, old_calls
    assert all(line.split()[0] in CALLBACK_EVENTS and line.endswith(" cbdemo") for line in old_calls), old_calls
