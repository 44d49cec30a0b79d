"""The member-record publishing rule: publish on change or when the heartbeat is due."""

from __future__ import annotations

from typing import Any

import pytest

from raftpg.ha.publishing import heartbeat_interval, should_publish

RECORD: dict[str, Any] = {"instance_id": "a1", "role": "replica", "state": "running", "timeline": 2,
                          "lsn": 100, "receive_lsn": 100, "replay_lsn": 90, "tags": {"nosync": False},
                          "upstream": "n1", "updated": 1000.0}


def test_nothing_in_raft_yet_publishes() -> None:
    assert should_publish(None, RECORD, None, now=5.0, heartbeat=3.0)
    assert should_publish(RECORD, RECORD, None, now=5.0, heartbeat=3.0)


def test_unchanged_record_waits_for_the_heartbeat() -> None:
    current = {**RECORD, "updated": 1002.0}  # only the timestamp differs
    assert not should_publish(RECORD, current, last_commit_at=10.0, now=12.9, heartbeat=3.0)
    assert should_publish(RECORD, current, last_commit_at=10.0, now=13.0, heartbeat=3.0)


@pytest.mark.parametrize("field, value", [
    ("role", "primary"), ("state", "stopped"), ("timeline", 3), ("lsn", 101), ("receive_lsn", 120),
    ("replay_lsn", 95), ("tags", {"nosync": True}), ("upstream", None), ("instance_id", "b2"),
    ("pending_restart", True),
])
def test_any_change_but_updated_publishes_at_once(field: str, value: object) -> None:
    current = {**RECORD, field: value}
    assert should_publish(RECORD, current, last_commit_at=10.0, now=10.1, heartbeat=3.0)


def test_json_round_trip_is_not_a_change() -> None:
    """Raft stores JSON: a tuple we publish reads back as a list and must compare equal."""
    sent = {**RECORD, "tags": {"groups": ("a", "b")}}
    stored = {**RECORD, "tags": {"groups": ["a", "b"]}}
    assert not should_publish(stored, sent, last_commit_at=10.0, now=11.0, heartbeat=3.0)


@pytest.mark.parametrize("ttl, loop_wait, expected", [(10.0, 2.0, 3.0), (30.0, 10.0, 5.0), (5.0, 1.0, 1.5),
                                                       (10.0, 5.0, 0.0), (10.0, 8.0, 0.0)])
def test_heartbeat_interval(ttl: float, loop_wait: float, expected: float) -> None:
    assert heartbeat_interval(ttl, loop_wait) == pytest.approx(expected)


@pytest.mark.parametrize("ttl, loop_wait, retry_timeout", [(10.0, 2.0, 4.0), (5.0, 1.0, 2.0), (30.0, 10.0, 10.0),
                                                           (10.0, 8.0, 1.0), (3.0, 0.1, 1.4)])
def test_a_cycle_per_loop_wait_never_lets_the_record_reach_ttl(ttl: float, loop_wait: float,
                                                               retry_timeout: float) -> None:
    """Simulate cycles every loop_wait whose publish takes the worst allowed commit latency
    (retry_timeout): the record applied last is always younger than ttl when looked at."""
    assert loop_wait + 2 * retry_timeout <= ttl  # what config validation guarantees
    heartbeat = heartbeat_interval(ttl, loop_wait)
    applied_at = 0.0
    worst_age = 0.0
    now = 0.0
    while now < 20 * ttl:
        now += loop_wait
        worst_age = max(worst_age, now - applied_at)
        if should_publish(RECORD, RECORD, applied_at, now, heartbeat):
            worst_age = max(worst_age, now + retry_timeout - applied_at)  # looked at just before it applies
            applied_at = now + retry_timeout
            now = applied_at
    assert worst_age < ttl
