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

The serving process also limits glibc to ARENAS heaps (``limit_arenas``, from
``app.serve`` before the server starts). By default every thread that meets a
busy heap gets one of its own, up to eight per core, and each keeps its free
blocks: with a thread per libvirt call in flight (``virt/callthreads.py``), the
first sweep of a hundred hosts spread the process over sixteen heaps. Measured
with bench/virt_memory.py (100 hosts, 5,000 guests, one run each): 120.7-124.5 MB
resident after the first sweep and 140-147 MB at its peak with the default,
115.9 MB and 118.8 MB at its peak with two. Python allocates under the GIL, so
more heaps bought no speed on the 2 cores measured.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from fogmachine.tasks import PeriodicTask

log = logging.getLogger(__name__)

INTERVAL = 5.0
# glibc's heaps ("arenas") for the whole process; see the module docstring.
ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def limit_arenas(count: int = ARENAS) -> bool:
    """Let glibc keep at most ``count`` heaps for the process's threads; False where there is no ``mallopt``
    (not glibc) or it refused. Meant for the start of the process, before its threads allocate."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        log.debug("no mallopt in this C library: the number of heaps is its own")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))


def find_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
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
