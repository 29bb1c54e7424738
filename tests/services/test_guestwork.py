"""GuestWork: work on one guest runs one piece at a time, in order; other guests' work is not held up."""

import asyncio

from fogmachine.services.guestwork import GuestWork


async def test_work_on_a_guest_runs_alone_and_in_order_and_leaves_nothing_behind():
    work = GuestWork()
    order: list[str] = []
    first_in, go = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with work.hold(7):
            first_in.set()
            order.append("first in")
            await go.wait()
            order.append("first out")

    async def second() -> None:
        async with work.hold(7):
            order.append("second")

    a = asyncio.create_task(first())
    await first_in.wait()
    b = asyncio.create_task(second())
    async with asyncio.timeout(10):
        while work.holders(7) < 2:
            await asyncio.sleep(0)
    async with asyncio.timeout(10), work.hold(8):  # another guest: not held up
        assert work.busy(8) and work.holders(8) == 1
    assert order == ["first in"] and work.busy(7)
    go.set()
    async with asyncio.timeout(10):
        await asyncio.gather(a, b)
    assert order == ["first in", "first out", "second"]
    assert not work.busy(7) and not work.busy(8) and work.holders(7) == 0


async def test_a_failing_piece_of_work_lets_the_next_one_go():
    work = GuestWork()

    async def failing() -> None:
        async with work.hold(3):
            raise RuntimeError("boom")

    try:
        await failing()
    except RuntimeError:
        pass
    assert not work.busy(3)
    async with asyncio.timeout(10), work.hold(3):
        assert work.holders(3) == 1
