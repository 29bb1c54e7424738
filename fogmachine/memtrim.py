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
``malloc_trim`` and there is no task.

It runs as one of the server's periodic tasks (``tasks.TaskRegistry``, not
exclusive: every process trims its own memory), added by ``composition.build``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from fogmachine.tasks import PeriodicTask

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


def trim_task(interval_s: float = INTERVAL, trim: Callable[[int], int] | None = None) -> PeriodicTask | None:
    """The periodic task that calls ``malloc_trim(0)`` every ``interval_s`` seconds (``trim`` for tests), or
    None where the C library has no ``malloc_trim``."""
    trim = trim if trim is not None else find_trim()
    if trim is None:
        log.debug("no malloc_trim in this C library: freed memory stays with the process")
        return None
    call = trim

    async def run() -> None:
        call(0)

    return PeriodicTask("memtrim", interval_s, run, exclusive=False, jitter=0.0)
