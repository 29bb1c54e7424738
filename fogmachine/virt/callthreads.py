"""The threads that make libvirt calls: one for every call in flight, so no call ever waits for another's.

A libvirt call to a real host is a network round trip: the thread making it
waits, and the work is done elsewhere. How many calls can overlap is then what
decides a fleet's speed, and any queue in front of the calls is where it is
lost. Measured with 100 hosts x 50 domains behind a delayed link
(bench/virt_network.py), the shared pool of two threads this replaces took
3.3 times the raw calls' time for a steady resync at 2 ms and 17 times at
20 ms, and a user's pause waited behind the fleet's reads in the pool's queue
(4 s instead of 0.2 s on a fleet resyncing every second at 20 ms).

So every call gets a thread of its own at once: an idle one if there is one
(the most recently idle first, its cache still warm), a new one otherwise.
Nothing is queued, so

* a host that stops answering in the middle of a call holds that one thread
  until libvirt's keepalive gives up, and no other host's calls;
* a slow call (starting a QEMU domain takes most of a second) holds up
  nobody else's, and a user's action never waits behind the fleet's reads.

A thread that found no work for ``idle_timeout`` seconds leaves, so after a
burst the process goes back to the few threads its steady load needs.
``max_threads`` is a safety valve against a runaway, not a pool size: past it
calls wait for a thread, and the log says so.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 30.0
MAX_THREADS = 1024

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class _Worker:
    """One thread and the slot its next job is handed over in."""

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.wake = threading.Lock()  # held while there is nothing for it: released to hand a job over
        self.wake.acquire()


class CallThreads(Executor):
    """An Executor that runs every call at once on a thread of its own; see the module docstring."""

    def __init__(self, *, idle_timeout: float = IDLE_TIMEOUT, max_threads: int = MAX_THREADS,
                 name: str = "fm-virt") -> None:
        if max_threads < 1:
            raise ValueError("call threads need at least one thread")
        self.idle_timeout = idle_timeout
        self.max_threads = max_threads
        self.name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # a stack: the most recently idle on top
        self._waiting: deque[_Job] = deque()  # only past max_threads
        self._threads: set[threading.Thread] = set()
        self._started = 0
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        job: _Job = (future, fn, args, kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError(f"call threads {self.name} are shut down")
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.wake.release()
            elif len(self._threads) < self.max_threads:
                self._start(job)
            else:
                if not self._waiting:
                    log.warning("%s: %d threads busy, calls wait for one", self.name, len(self._threads))
                self._waiting.append(job)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._waiting:
                    self._waiting.popleft()[0].cancel()
            idle, self._idle = self._idle, []
            for worker in idle:
                worker.wake.release()  # with no job: leave
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    @property
    def threads(self) -> int:
        """Threads alive now, busy or idle."""
        with self._lock:
            return len(self._threads)

    @property
    def busy(self) -> int:
        """Threads in a call now."""
        with self._lock:
            return len(self._threads) - len(self._idle)

    def _start(self, job: _Job) -> None:
        """Under the lock."""
        self._started += 1
        worker = _Worker()
        worker.job = job
        thread = threading.Thread(target=self._work, args=(worker,), daemon=True, name=f"{self.name}-{self._started}")
        self._threads.add(thread)
        thread.start()

    def _work(self, me: _Worker) -> None:
        try:
            while True:
                job, me.job = me.job, None
                if job is None:
                    return
                future, fn, args, kwargs = job
                running = future.set_running_or_notify_cancel()
                result: Any = None
                error: BaseException | None = None
                if running:
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:
                        error = exc
                # Idle before the result is out: a caller that makes its next call as soon as it has the
                # result then finds this thread, rather than starting another.
                with self._lock:
                    if self._waiting:
                        me.job = self._waiting.popleft()
                    elif self._shutdown:
                        me.job = None
                    else:
                        self._idle.append(me)
                        me.job = None
                    go_on = me.job is not None
                    leave = not go_on and self._shutdown
                if running:
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(result)
                del job, future, fn, args, kwargs, result, error  # nothing of the call outlives it here
                if go_on:
                    continue
                if leave:
                    return
                if not me.wake.acquire(timeout=self.idle_timeout):
                    with self._lock:
                        if me in self._idle:  # nobody handed it a job meanwhile: leave
                            self._idle.remove(me)
                            return
                    me.wake.acquire()  # a job was handed over just as it timed out: take it
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
