"""Handing the memory the process has freed back to the system, every few seconds (a server Component).

glibc's ``free`` gives memory back to the system only from the top of a heap;
a free block below a live one stays resident. A server that reads a fleet
churns through many such blocks (libvirt's replies, SQLite's pages, Python's
large strings and dicts, on the call threads' heaps), and measured with
bench/virt_memory.py (100 hosts, 5,000 guests) 13 to 18 MB of its resident
memory was free blocks nobody would use again soon. ``malloc_trim(0)`` returns
the whole free pages among them (``madvise``), without moving anything, and
took 0.4 to 5 ms on that server; every ``INTERVAL`` seconds it costs well under
0.1 % of a core. Elsewhere than glibc (musl, macOS) there is no
``malloc_trim`` and this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

INTERVAL = 5.0


def find_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    result: Callable[[int], int] = trim
    return result


class MallocTrim:
    """Calls ``malloc_trim(0)`` every ``interval_s`` seconds on the IOLoop while started; see the module docstring."""

    def __init__(self, interval_s: float = INTERVAL, trim: Callable[[int], int] | None = None) -> None:
        self.interval_s = interval_s
        self.trim = trim if trim is not None else find_trim()
        self.trims = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.trim is None:
            log.debug("no malloc_trim in this C library: freed memory stays with the process")
            return
        self._task = asyncio.create_task(self._run(), name="fogmachine-malloc-trim")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        assert self.trim is not None
        while True:
            await asyncio.sleep(self.interval_s)
            self.trim(0)
            self.trims += 1
