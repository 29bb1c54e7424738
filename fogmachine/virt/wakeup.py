"""Wakeup: the flag a host's watcher sleeps on between resyncs, with a timeout.

Cheaper than ``asyncio.Event`` + ``wait_for`` (which wraps every wait in a
task): with a hundred hosts resyncing at once, that overhead was a third of
a resync's cost (bench/virt_fleet_sweep.py).
"""

from __future__ import annotations

import asyncio


class Wakeup:
    """Set by whoever wants a resync (an event, an action); ``wait`` returns at once while it is set."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._flag = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self, timeout: float) -> None:
        if self._flag:
            return
        future = self._future = self._loop.create_future()
        handle = self._loop.call_later(timeout, _resolve, future)
        try:
            await future
        finally:
            handle.cancel()
            self._future = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
