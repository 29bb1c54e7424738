"""The threads that make libvirt calls: a few, shared by every host, and never held by a hung one.

Why one shared pool rather than an executor per host: libvirt-python releases
and retakes the GIL around every call, however small, so a hundred hosts'
threads reading at once spend their time handing the GIL and the CPU around;
and even taking turns, each hand-off from the IOLoop to a sleeping per-host
thread and back costs two context switches. A few threads that take one
host's read after another from a common queue stay awake between reads
(bench/virt_fleet_sweep.py: a steady resync of 100 test-driver hosts went
from 2.3 to about 1.3 times the raw calls' time).

Why it cannot be a plain ``ThreadPoolExecutor(2)``: a host that stops
answering in the middle of a call keeps that thread until libvirt's keepalive
gives up (15 s or more), and two such hosts would stall everyone; a slow call
(starting a QEMU domain takes most of a second) would hold up every other
host's reads meanwhile. So a watchdog looks at the threads while calls run: a
thread that has been in one call for longer than ``stall_after`` stops
counting against ``size``, a new thread takes its place, and the stalled one
exits when its call returns. A slow host thus delays only its own calls, as
with a thread of its own, and the pool is back to ``size`` threads once the
calls return. While no call runs, the watchdog sleeps.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# However many calls hang at once, no more threads than this are started; the
# rest wait in the queue (and time out on the caller's side).
MAX_THREADS = 64

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


@dataclass(eq=False)
class _Worker:
    name: str
    busy_since: float | None = None  # time.monotonic() when its current call began
    stalled: bool = False  # replaced: leaves when its call returns
    thread: threading.Thread = field(init=False)


class CallPool(Executor):
    """An Executor of ``size`` threads plus stand-ins for stalled ones; see the module docstring."""

    def __init__(self, size: int, *, stall_after: float = 0.1, name: str = "fm-virt") -> None:
        if size < 1:
            raise ValueError("a call pool needs at least one thread")
        self.size = size
        self.stall_after = stall_after
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._calls_running = threading.Condition(self._lock)  # the watchdog waits on it while idle
        self._workers: list[_Worker] = []
        self._started = 0
        self._shutdown = False
        self._watchdog: threading.Thread | None = None
        self._watchdog_idle = False

    # ------------------------------------------------------------------ Executor

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError(f"call pool {self.name} is shut down")
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, daemon=True, name=f"{self.name}-watchdog")
                self._watchdog.start()
            if self._counted() < self.size and len(self._workers) < MAX_THREADS:
                self._start_worker()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                self._calls_running.notify_all()
                if cancel_futures:
                    self._drain()
                for _ in self._workers:
                    self._jobs.put(None)
            threads = [w.thread for w in self._workers]
        if wait:
            for thread in threads:
                thread.join()

    # ------------------------------------------------------------------ for tests and logs

    @property
    def threads(self) -> int:
        """Threads alive now, stalled ones included."""
        with self._lock:
            return len(self._workers)

    @property
    def stalled(self) -> int:
        with self._lock:
            return sum(1 for w in self._workers if w.stalled)

    # ------------------------------------------------------------------ inside

    def _counted(self) -> int:
        return sum(1 for w in self._workers if not w.stalled)

    def _start_worker(self) -> None:
        """Under the lock."""
        self._started += 1
        worker = _Worker(f"{self.name}-{self._started}")
        worker.thread = threading.Thread(target=self._work, args=(worker,), daemon=True, name=worker.name)
        self._workers.append(worker)
        worker.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].cancel()

    def _work(self, me: _Worker) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                break
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up before the call began
            with self._lock:
                me.busy_since = time.monotonic()
                if self._watchdog_idle:
                    self._watchdog_idle = False
                    self._calls_running.notify()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)
            del item, future, fn, args, kwargs  # nothing of the call outlives it here
            with self._lock:
                me.busy_since = None
                if me.stalled:  # replaced while it hung: leave, the pool has its threads
                    break
        with self._lock:
            self._workers.remove(me)

    def _watch(self) -> None:
        period = self.stall_after / 2
        while True:
            with self._lock:
                while not self._shutdown and all(w.busy_since is None for w in self._workers):
                    self._watchdog_idle = True
                    self._calls_running.wait()
                self._watchdog_idle = False
                if self._shutdown:
                    return
            time.sleep(period)
            with self._lock:
                self._replace_stalled(time.monotonic())

    def _replace_stalled(self, now: float) -> None:
        """Under the lock."""
        for worker in list(self._workers):
            since = worker.busy_since
            if worker.stalled or since is None or now - since < self.stall_after:
                continue
            if len(self._workers) >= MAX_THREADS:
                log.warning("%s: %d threads, %d of them in calls that hang; no more are started",
                            self.name, len(self._workers), sum(w.stalled for w in self._workers) + 1)
                return
            worker.stalled = True
            log.debug("%s: a call has run %.2f s on %s; another thread takes its place", self.name, now - since,
                      worker.name)
            self._start_worker()
