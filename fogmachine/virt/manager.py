"""HostManager: every host's HostConnection, and what they learn written to the database.

A server component (``ctx.hosts``). ``start()`` connects to every host in
virthosts.conf at once, each on its own, so a dead host costs the others
nothing; it waits for those first attempts at most ``libvirt_connect_timeout``
(plus a second) so that the first page served already shows real states, and
anything slower carries on in the background.

Which hosts are watched: every host listed in virthosts.conf (``in_config``),
enabled or not, and a host that left the file for as long as Fogmachine's
guests live on it, so that they can still be given back (``hosts sync``
deletes the host once the last is gone). Disabling a host only stops placement
on it; its guests stay visible and can be started and stopped.

The hosts table can change under a running server: ``fogmachine hosts sync``
from the command line, another process's start, a SIGHUP. Every
``TABLE_POLL`` seconds the manager compares what it watches with the table
and follows it (``reload``): one small query, no libvirt call.

Cheap resyncs: each HostConnection remembers the snapshot last written. When a
resync reads the same thing (free memory within a small slack) the database is
not touched at all; every ``DB_RECHECK`` seconds the rows are compared anyway,
which also catches rows changed by another Fogmachine process sharing the
database and refreshes the host's ``last_seen_at``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fogmachine.context import Context
from fogmachine.db.models import Host
from fogmachine.errors import FogmachineError, NotFound
from fogmachine.services import hoststate
from fogmachine.virt.callpool import CallPool
from fogmachine.virt.connection import HostConnection
from fogmachine.virt.inventory import HostSnapshot
from fogmachine.virthosts import guests_live_on

log = logging.getLogger(__name__)

DB_RECHECK = 300.0
TABLE_POLL = 10.0
# Threads of the call pool that every host's libvirt calls share (see virt.callpool for why
# a few shared threads, and how a hung host is kept from holding one).
CALL_THREADS = 2


def _watched_hosts(session: Session) -> list[tuple[int, str, str]]:
    watched = or_(Host.in_config.is_(True), guests_live_on(Host.id))
    rows = session.execute(select(Host.id, Host.name, Host.uri).where(watched).order_by(Host.name))
    return [(row.id, row.name, row.uri) for row in rows]


class HostManager:
    """All HostConnections of this server; also the Listener that writes what they see."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self._hosts: dict[str, HostConnection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._pool = CallPool(CALL_THREADS, name="fm-virt")
        self._reload_lock = asyncio.Lock()
        # Called with a host's name when it answers after being down (or at first contact), once its
        # snapshot is written: work that waited for the host (e.g. diskboot's retries) starts then.
        self.on_up: list[Callable[[str], None]] = []

    # ------------------------------------------------------------------ component

    async def start(self) -> None:
        rows = await self.ctx.db.run(_watched_hosts)
        for host_id, name, uri in rows:
            self._hosts[name] = self._make(host_id, name, uri)
        for host in self._hosts.values():
            await host.watch()
        self._started = True
        self.spawn(self._follow_table(), name="fm-hosts-table")
        await self.wait_settled(self.config.libvirt_connect_timeout + 1)
        up = sum(1 for h in self._hosts.values() if h.connected)
        log.info("hypervisor hosts: %d of %d up", up, len(self._hosts))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(host.close() for host in self._hosts.values()), return_exceptions=True)
        self._hosts.clear()
        self._started = False
        # The hosts waited for their calls; a thread still hung in one is left to end on its own.
        self._pool.shutdown(wait=False)
        self._pool = CallPool(CALL_THREADS, name="fm-virt")

    def _make(self, host_id: int, name: str, uri: str) -> HostConnection:
        return HostConnection(
            name, uri, host_id=host_id, connect_timeout=self.config.libvirt_connect_timeout,
            call_timeout=self.config.libvirt_call_timeout, resync_interval=self.config.resync_interval,
            listener=self, pool=self._pool,
        )

    async def reload(self) -> None:
        """Follow the hosts table: start new hosts, stop removed or changed ones."""
        async with self._reload_lock:
            rows = {name: (host_id, uri) for host_id, name, uri in await self.ctx.db.run(_watched_hosts)}
            for name, host in list(self._hosts.items()):
                if name not in rows or rows[name] != (host.host_id, host.uri):
                    del self._hosts[name]
                    log.info("host %s is no longer watched", name)
                    await host.close()
            for name, (host_id, uri) in rows.items():
                if name not in self._hosts:
                    host = self._make(host_id, name, uri)
                    self._hosts[name] = host
                    log.info("host %s is watched from now on (%s)", name, uri)
                    await host.watch()

    async def _follow_table(self) -> None:
        while True:
            await asyncio.sleep(TABLE_POLL)
            try:
                await self.reload()
            except FogmachineError as exc:  # the database is away for a moment: the next round tries again
                log.warning("could not compare the watched hosts with the hosts table: %s", exc.message)
            except Exception:  # a bug must not end the following for the life of the server
                log.exception("following the hosts table failed; trying again in %g s", TABLE_POLL)

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

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run background work (a shutdown watch, ...) that ``stop()`` cancels."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    # ------------------------------------------------------------------ listener

    async def host_up(self, host: HostConnection, snapshot: HostSnapshot) -> None:
        # ``applied`` is None at first contact and again after the host was marked down.
        came_up = host.applied is None
        await self._apply(host, snapshot)
        if came_up:
            for hook in list(self.on_up):
                try:
                    hook(host.name)
                except Exception:  # one hook's bug must not keep the host's state from being written
                    log.exception("host %s: a host-up hook failed", host.name)

    async def _apply(self, host: HostConnection, snapshot: HostSnapshot) -> None:
        now = time.monotonic()
        slack = max(32, snapshot.facts.total_memory_mb // 100)
        if snapshot.same_as(host.applied, slack) and now - host.applied_at < DB_RECHECK:
            return
        assert host.host_id is not None
        for attempt in (1, 2):
            try:
                # lock: reads then writes; on SQLite that must hold the write lock from BEGIN.
                applied = await self.ctx.db.run(hoststate.apply_snapshot, host.host_id, snapshot,
                                                seen_at=host.last_seen_at, free_slack_mb=slack, lock=True)
                break
            except IntegrityError as exc:  # another process inserted the same row first
                if attempt == 2:
                    host.applied = None
                    raise
                log.info("host %s: resync collided with another writer (%s); again", host.name,
                         type(exc.orig).__name__)
        host.applied, host.applied_at = snapshot, now
        if applied.skipped:
            # Rows that changed under the resync were left as their writer made them: read the host
            # again now, so they catch up with it at once rather than at the next event or interval.
            host.applied = None
            host.request_resync()
        if applied.changes:
            log.debug("host %s: %d change(s) written", host.name, applied.changes)

    async def host_down(self, host: HostConnection, reason: str) -> None:
        assert host.host_id is not None
        await self.ctx.db.run(hoststate.apply_down, host.host_id, reason, last_seen_at=host.last_seen_at,
                              lock=True)
        log.warning("host %s is down: %s", host.name, reason)
