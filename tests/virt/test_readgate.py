"""ReadGate: the bound on whole-host reads follows the reads' wall and CPU times, and never leaks a place."""

import asyncio
import time

import pytest

from fogmachine.virt.readgate import ReadGate, timed


def test_the_limit_is_the_reads_that_keep_a_core_busy_within_floor_and_ceiling():
    gate = ReadGate(floor=2, ceiling=50, initial=16)
    assert gate.limit == 16  # nothing measured yet
    gate.record(wall=0.010, cpu=0.001)  # a read that mostly waits for its host: 2 x 10 reads
    assert gate.limit == 20
    gate.record(wall=0.200, cpu=0.001)  # a slower read does not raise it: the least wall time counts
    assert gate.limit == 20
    gate.record(wall=1.0, cpu=1e-7)  # below the clock's resolution: not a measurement
    assert gate.limit == 20


def test_reads_that_are_all_work_bring_it_to_the_floor_and_waits_to_the_ceiling():
    busy = ReadGate(floor=2, ceiling=128)
    for _ in range(50):
        busy.record(wall=0.001, cpu=0.001)  # in-process: the read is its own CPU time
    assert busy.limit == 2
    slow = ReadGate(floor=2, ceiling=128)
    slow.record(wall=0.040, cpu=0.0002)  # 20 ms round trips: 400 would keep a core busy
    assert slow.limit == 128


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        ReadGate(floor=0)
    with pytest.raises(ValueError):
        ReadGate(floor=5, ceiling=4)


async def test_no_more_than_the_limit_run_and_a_raised_limit_admits_the_waiting():
    gate = ReadGate(floor=1, ceiling=10, initial=2)
    release = asyncio.Event()
    most = [0]

    async def read() -> None:
        async with gate.slot():
            most[0] = max(most[0], gate.running)
            await release.wait()

    tasks = [asyncio.create_task(read()) for _ in range(6)]
    async with asyncio.timeout(10):
        while gate.running < 2:
            await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert gate.running == 2 and most[0] == 2
    gate.record(wall=0.002, cpu=0.0005)  # the reads wait more than they work: 2 x 4 = 8 at once
    assert gate.limit == 8
    async with asyncio.timeout(10):
        while gate.running < 6:
            await asyncio.sleep(0)
    release.set()
    async with asyncio.timeout(10):
        await asyncio.gather(*tasks)
    assert gate.running == 0 and most[0] == 6


async def test_a_cancelled_waiter_leaves_no_place_taken():
    gate = ReadGate(floor=1, ceiling=1, initial=1)
    release = asyncio.Event()

    async def read() -> None:
        async with gate.slot():
            await release.wait()

    first = asyncio.create_task(read())
    waiting = [asyncio.create_task(read()) for _ in range(3)]
    await asyncio.sleep(0.01)
    waiting[0].cancel()
    release.set()
    waiting[1].cancel()  # cancelled after the first read may have handed it the place
    async with asyncio.timeout(10):
        results = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError) and isinstance(results[2], asyncio.CancelledError)
    assert gate.running == 0
    async with asyncio.timeout(10):  # and the gate still admits
        async with gate.slot():
            assert gate.running == 1


def test_timed_measures_wall_and_this_threads_cpu():
    def work() -> int:
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
        time.sleep(0.02)
        return 7

    result, wall, cpu = timed(work)
    assert result == 7
    assert cpu >= 0.02 and wall >= cpu + 0.015


async def test_a_waiter_cancelled_just_after_it_was_handed_a_place_passes_it_on():
    gate = ReadGate(floor=1, ceiling=1, initial=1)
    release = asyncio.Event()
    waiter: list[asyncio.Task[None]] = []

    async def waiting_read() -> None:
        async with gate.slot():
            pass

    async def holder() -> None:
        async with gate.slot():
            await release.wait()
        waiter[0].cancel()  # the place was handed to it on the way out, and it has not run since

    first = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    waiter.append(asyncio.create_task(waiting_read()))
    await asyncio.sleep(0.01)
    release.set()
    async with asyncio.timeout(10):
        results = await asyncio.gather(first, waiter[0], return_exceptions=True)
    assert results[0] is None and isinstance(results[1], asyncio.CancelledError)
    assert gate.running == 0


async def test_a_read_that_hangs_gives_its_place_up_once_overdue():
    """A host that stopped answering holds its read until the call timeout; not the others' place."""
    gate = ReadGate(floor=1, ceiling=1, initial=1, overdue_floor=0.25)
    gate.record(wall=0.001, cpu=0.001)
    assert gate.overdue == 0.25  # the floor: ten reads' time is less
    hung = asyncio.Event()

    async def hung_read() -> None:
        async with gate.slot():
            await hung.wait()

    stuck = asyncio.create_task(hung_read())
    await asyncio.sleep(0.01)
    assert gate.running == 1
    async with asyncio.timeout(10):  # would wait for ``hung`` were the place still held
        async with gate.slot():
            assert gate.running == 1
    hung.set()
    await stuck
    assert gate.running == 0  # its own exit does not give the place up a second time


def test_the_least_wall_time_is_that_of_the_recent_window():
    gate = ReadGate(floor=1, ceiling=1000, window=3, overdue_floor=0.25)
    gate.record(wall=0.001, cpu=0.001)  # a fast read, then three slower ones push it out of the window
    for _ in range(3):
        gate.record(wall=0.010, cpu=0.001)
    assert gate.limit == 20 and gate.overdue == 0.25
    for _ in range(3):
        gate.record(wall=0.100, cpu=0.001)
    assert gate.limit == 200 and gate.overdue == pytest.approx(1.0)
