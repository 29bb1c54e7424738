"""ReadGate: how many whole-host reads run at once, following what the reads themselves cost.

A read of a whole host (a resync) is a few round trips to the host and then
some work in this process: two small libvirt calls per domain, each giving up
and taking back the GIL. Whether reading many hosts at once pays depends on
which of the two dominates, and that differs by three orders of magnitude
between fleets:

* over a network the reads mostly wait: at a 20 ms round trip a hundred hosts
  read at once take 0.2 s, sixteen at a time 0.3 s (bench/virt_network.py);
* on libvirt's in-process test driver, or a host on the same machine, a read
  is all work: a hundred at once (or sixteen) spend more time handing the GIL
  to one another than reading (bench/virt_fleet_sweep.py: 3.7x the raw calls
  at sixteen, 1.6-1.8x with two, on a quiet machine).

A fixed bound is right for one of them only. So every read reports its wall
time and the CPU time of its thread (``record``), and the bound is the number
of reads that keep one core busy: the least wall time seen lately (a read
that waited for nothing but its host) over the typical CPU time, doubled for
the second core and for what libvirt does outside the GIL. Only whole-host
reads pass through it: a user's action, a define or a look-up never waits
here.

A read that has taken far longer than reads take (``overdue``) gives its
place up while it goes on: it is waiting for a host that stopped answering,
not using the CPU, and a few such hosts must not hold every other host's
reads back until the call timeout.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")

# The bound never goes below FLOOR (one read waiting for its host while another works) nor above CEILING.
# Past 32 the reads' own work fills the time anyway: at a 20 ms round trip, 30 at once read 100 hosts x 50
# domains in 0.97x the raw calls' best time (bench/virt_network.py), and every read at once is a call
# thread and its memory (with 128 allowed, the first sweep of 100 hosts ran 95 threads and 4 MB more).
FLOOR = 2
CEILING = 32
# Before any read has been measured: the fixed bound this gate replaced, a middle ground.
INITIAL = 16
# How many recent reads the least wall time is taken over: enough to span a resync of a large fleet, few
# enough that a link that got slower (or faster) is followed within a few sweeps.
WINDOW = 256
# Weight of the newest read in the running CPU figure.
CPU_WEIGHT = 0.1
# A read running for OVERDUE_FACTOR times the least wall time seen lately, and at least OVERDUE_FLOOR
# seconds, gives its place up: a loaded machine may slow a read a few times over, a hung host is seconds.
OVERDUE_FACTOR = 10
OVERDUE_FLOOR = 5.0
# Reads that kept their thread busy for less than this are not measured: the clock's resolution.
MIN_CPU = 20e-6


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float, float]:
    """``fn(*args)`` with the wall time and the calling thread's CPU time it took (run on the call thread)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


class ReadGate:
    """An asyncio bound on reads in flight whose size follows the reads' wall and CPU times (see above)."""

    def __init__(self, *, floor: int = FLOOR, ceiling: int = CEILING, initial: int = INITIAL,
                 window: int = WINDOW, overdue_floor: float = OVERDUE_FLOOR) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError("a read gate needs 1 <= floor <= ceiling")
        self.floor = floor
        self.ceiling = ceiling
        self.limit = min(ceiling, max(floor, initial))
        self.overdue_floor = overdue_floor
        self._walls: deque[float] = deque(maxlen=window)
        self._least: float | None = None  # min(self._walls), kept: it is asked for at every read
        self._cpu: float | None = None
        self._running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def running(self) -> int:
        return self._running

    @property
    def overdue(self) -> float:
        """Seconds after which a read gives its place up (see the module docstring)."""
        if self._least is None:
            return self.overdue_floor
        return max(self.overdue_floor, OVERDUE_FACTOR * self._least)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` places for the length of a read, or until it is overdue."""
        await self._acquire()
        held = True

        def let_go() -> None:
            nonlocal held
            if held:
                held = False
                self._release()

        timer = asyncio.get_running_loop().call_later(self.overdue, let_go)
        try:
            yield
        finally:
            timer.cancel()
            let_go()

    async def _acquire(self) -> None:
        if self._running >= self.limit or self._waiting:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed a place just as it was cancelled: pass it on
                elif waiter in self._waiting:  # (``_admit`` drops a cancelled one it comes to)
                    self._waiting.remove(waiter)
                raise
        else:
            self._running += 1

    def _release(self) -> None:
        self._running -= 1
        self._admit()

    def _admit(self) -> None:
        while self._waiting and self._running < self.limit:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self._running += 1
                waiter.set_result(None)

    def record(self, wall: float, cpu: float) -> None:
        """One read took ``wall`` seconds, ``cpu`` of them on its thread's CPU: set the bound again."""
        if cpu < MIN_CPU or wall <= 0:
            return
        dropped = self._walls[0] if len(self._walls) == self._walls.maxlen else None
        self._walls.append(wall)
        if self._least is None or wall <= self._least:
            self._least = wall
        elif dropped == self._least:  # the least left the window: look again
            self._least = min(self._walls)
        self._cpu = cpu if self._cpu is None else self._cpu + CPU_WEIGHT * (cpu - self._cpu)
        limit = math.ceil(2 * self._least / self._cpu)
        self.limit = min(self.ceiling, max(self.floor, limit))
        self._admit()
