import asyncio

import pytest
from llmsuite_common.clock import ManualClock, monotonic


def test_a_manual_clock_moves_only_when_advanced():
    clock = ManualClock()
    start = clock()
    assert start > 0
    assert clock() == start
    clock.advance(2.5)
    assert clock() == start + 2.5
    clock.advance(0)
    assert clock() == start + 2.5


def test_a_manual_clock_starts_where_told():
    assert ManualClock(start=42.0)() == 42.0


def test_a_manual_clock_does_not_go_back():
    clock = ManualClock()
    with pytest.raises(ValueError):
        clock.advance(-0.1)
    assert clock() == ManualClock()()


async def test_its_sleep_moves_the_clock_without_waiting_and_lets_others_run():
    clock = ManualClock()
    ran = []

    async def other() -> None:
        ran.append(clock())

    task = asyncio.create_task(other())
    started = monotonic()
    await clock.sleep(30)
    assert monotonic() - started < 1.0
    assert clock() == ManualClock()() + 30
    assert ran == [clock()], "the other task ran during the sleep"
    await task


async def test_a_negative_sleep_returns_at_once_as_asyncio_sleep_does():
    clock = ManualClock()
    await clock.sleep(-1)
    assert clock() == ManualClock()()
