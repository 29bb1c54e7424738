"""HostFleet: every watched host's HostConnection, by name, over shared call threads.

The hypervisor half of what the server keeps of its hosts, with no database in
it: the fleet holds the connections, runs every host's libvirt calls on one
``CallThreads`` (see ``virt.callthreads`` for why every call gets a thread of
its own), owns background work that must end with it,
and closes it all in order. Which hosts to watch, and what to do with what they
report, is decided by whoever builds it: the connections report to the
``Listener`` it is given. In the server that is
``services.hostwatch.HostManager``, which follows the hosts table and writes
snapshots into rows; a benchmark or a test can hand it any other listener.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from fogmachine.errors import NotFound
from fogmachine.virt.callthreads import CallThreads
from fogmachine.virt.connection import HostConnection
from fogmachine.virt.listener import Listener
from fogmachine.virt.readgate import ReadGate

__all__ = ["HostFleet", "Listener"]

log = logging.getLogger(__name__)




class HostFleet:
    """HostConnections by name, sharing one CallThreads and reporting to one Listener."""

    def __init__(self, listener: Listener, *, connect_timeout: float = 5, call_timeout: float = 30,
                 resync_interval: float = 60, read_gate: ReadGate | None = None) -> None:
        self.listener = listener
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.resync_interval = resync_interval
        self._hosts: dict[str, HostConnection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._threads = CallThreads(name="fm-virt")
        # Whole-host reads at once: as many as keep the CPU busy, no more (readgate.py says why).
        self._read_gate = read_gate if read_gate is not None else ReadGate()

    @property
    def threads(self) -> CallThreads:
        """The call threads the hosts share (replaced by fresh ones when the fleet is closed)."""
        return self._threads

    @property
    def read_gate(self) -> ReadGate:
        """The bound on whole-host reads at once (a benchmark prints where it settled)."""
        return self._read_gate

    def _make(self, host_id: int | None, name: str, uri: str) -> HostConnection:
        return HostConnection(
            name, uri, host_id=host_id, connect_timeout=self.connect_timeout, call_timeout=self.call_timeout,
            resync_interval=self.resync_interval, listener=self.listener, threads=self._threads,
            read_gate=self._read_gate,
        )

    def add(self, host_id: int | None, name: str, uri: str) -> HostConnection:
        """A connection to one more host, under ``name``; it starts watching with ``await host.watch()``.

        Apart from watching, so that a caller may register every host before the first of them is opened.
        """
        host = self._make(host_id, name, uri)
        self._hosts[name] = host
        return host

    async def remove(self, name: str) -> None:
        """Stop watching a host: forget it, then close its connection (waiting for its calls)."""
        host = self._hosts.pop(name)
        await host.close()

    def __contains__(self, name: object) -> bool:
        return name in self._hosts

    async def close(self) -> None:
        """Cancel the background work, close every host, shut the call threads down.

        The fleet can take hosts again afterwards, on fresh call threads, so that a stopped component can be
        started again.
        """
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(host.close() for host in self._hosts.values()), return_exceptions=True)
        self._hosts.clear()
        # The hosts waited for their calls; a thread still hung in one is left to end on its own.
        self._threads.shutdown(wait=False)
        self._threads = CallThreads(name="fm-virt")

    async def wait_settled(self, timeout: float | None = None) -> bool:
        """Wait until every host's first connection attempt has ended; False if some had not by ``timeout``."""
        if not self._hosts:
            return True
        results = await asyncio.gather(*(h.wait_settled(timeout) for h in self._hosts.values()))
        return all(results)

    # ------------------------------------------------------------------ lookups

    def get(self, host_name: str) -> HostConnection:
        try:
            return self._hosts[host_name]
        except KeyError:
            raise NotFound(f"no host named {host_name} is being watched") from None

    def get_by_id(self, host_id: int) -> HostConnection:
        for host in self._hosts.values():
            if host.host_id == host_id:
                return host
        raise NotFound(f"no host with id {host_id} is being watched")

    def all(self) -> list[HostConnection]:
        return list(self._hosts.values())

    # ------------------------------------------------------------------ background work

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run background work (a shutdown watch, ...) that ``close()`` cancels."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())
