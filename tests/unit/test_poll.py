"""raftpg.poll: the one wait-until-deadline helper, sync and async."""

from __future__ import annotations

import itertools
import time

import pytest

from raftpg.poll import async_wait_until, wait_for, wait_until

pytestmark = pytest.mark.unit


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, "", "found", "later"])
    assert wait_for(lambda: next(values), 1.0, "a value", interval=0.001) == "found"


def test_wait_for_names_what_it_waited_for_on_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timed out after 0.05s waiting for the moon"):
        wait_for(lambda: None, 0.05, "the moon", interval=0.01)
    assert time.monotonic() - started >= 0.05


def test_wait_until_says_whether_the_condition_held_in_time() -> None:
    calls = itertools.count()
    assert wait_until(lambda: next(calls) >= 3, 1.0, interval=0.001)
    assert not wait_until(lambda: False, 0.02, interval=0.005)


async def test_async_wait_until_takes_plain_and_coroutine_conditions() -> None:
    calls = itertools.count()

    async def third_time() -> bool:
        return next(calls) >= 2

    assert await async_wait_until(third_time, 1.0, interval=0.001)
    assert await async_wait_until(lambda: True, 0.0)
    assert not await async_wait_until(lambda: False, 0.02, interval=0.005)
