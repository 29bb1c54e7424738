"""HostManager: the server's hosts (``ctx.hosts``), followed from the hosts table, what they report written to rows.

A server component. It builds on ``virt.fleet.HostFleet`` (the connections,
their shared call threads, their background work), which knows no database, and
adds the two things that need one: which hosts to watch, read from the hosts
table, and the fleet's ``Listener``, which turns what a host reports into rows
through ``services.hoststate``.

``start()`` connects to every host in virthosts.conf at once, each on its own,
so a dead host costs the others nothing; it waits for those first attempts at
most ``libvirt_connect_timeout`` (plus a second) so that the first page served
already shows real states, and anything slower carries on in the background.

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
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.db.models import Host
from fogmachine.db.session import Database
from fogmachine.errors import FogmachineError
from fogmachine.services import hoststate
from fogmachine.virt.connection import HostConnection
from fogmachine.virt.fleet import HostFleet
from fogmachine.virt.inventory import HostSnapshot
from fogmachine.virthosts import guests_live_on

log = logging.getLogger(__name__)

DB_RECHECK = 300.0
# How long a plan request waits for others before its unit starts. A fleet's forced recheck ends its host
# reads one by one over tens of milliseconds: without the wait each unit took the one or two plans that had
# come, 67 units per sweep of 100 hosts (108 ms); with 10 ms, 16 units (75 ms); 20 ms saved little more
# (72 ms). A lone recheck (an event, one host) is 10 ms later, in the background.
BATCH_WINDOW = 0.01
RECHECK_NOW = float("-inf")  # applied_at that makes the next resync write, whatever it reads
TABLE_POLL = 10.0


class PlanBatches:
    """Plans of many hosts' snapshots made together: one unit of work for all that wait at once.

    A forced recheck of the whole fleet (every ``DB_RECHECK``, after a restart) asked the database once per
    host: a hundred units, each a thread hop, a session, two queries and a commit, most of that recheck's cost
    (bench/virt_fleet_sweep.py, issue 12). Here the first request waits ``BATCH_WINDOW`` for others, then a
    unit takes every request waiting; those that arrive while it runs go together in the next
    (``hoststate.plan_snapshots``: two light queries for all of them).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._waiting: list[tuple[hoststate.PlanRequest, asyncio.Future[hoststate.Plan | None]]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self.units = 0  # units of work run (tests and benchmarks read it)

    async def plan(self, request: hoststate.PlanRequest) -> hoststate.Plan | None:
        future: asyncio.Future[hoststate.Plan | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if not self._draining:
            self._draining = True
            self._task = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(BATCH_WINDOW)
            while self._waiting:
                batch, self._waiting = self._waiting, []
                self.units += 1
                try:
                    plans = await self.db.run(hoststate.plan_snapshots, [request for request, _ in batch])
                except asyncio.CancelledError:  # the loop is going away: so are the waiters
                    for _, future in [*batch, *self._waiting]:
                        future.cancel()
                    raise
                except Exception as exc:  # each waiter gets the unit's error, as its own unit would raise it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), plan in zip(batch, plans, strict=True):
                    if not future.done():
                        future.set_result(plan)
        finally:
            self._draining = False


def _watched_hosts(session: Session) -> list[tuple[int, str, str]]:
    watched = or_(Host.in_config.is_(True), guests_live_on(Host.id))
    rows = session.execute(select(Host.id, Host.name, Host.uri).where(watched).order_by(Host.name))
    return [(row.id, row.name, row.uri) for row in rows]


class HostManager:
    """The hosts of the hosts table, watched by a HostFleet; also the fleet's Listener, which writes what they see."""

    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db
        self.fleet = HostFleet(self, connect_timeout=self.config.libvirt_connect_timeout,
                               call_timeout=self.config.libvirt_call_timeout,
                               resync_interval=self.config.resync_interval)
        self._reload_lock = asyncio.Lock()
        # Called with a host's name when it answers after being down (or at first contact), once its
        # snapshot is written: work that waited for the host (e.g. diskboot's retries) starts then.
        self.on_up: list[Callable[[str], None]] = []
        # By host id: what its last plan that changed no row was decided from (hoststate.Unchanged).
        self._unchanged: dict[int, hoststate.Unchanged] = {}
        self.plans = PlanBatches(db)

    # ------------------------------------------------------------------ component

    async def start(self) -> None:
        rows = await self.db.run(_watched_hosts)
        for host_id, name, uri in rows:
            self.fleet.add(host_id, name, uri)
        for host in self.fleet.all():
            await host.watch()
        self.spawn(self._follow_table(), name="fm-hosts-table")
        await self.wait_settled(self.config.libvirt_connect_timeout + 1)
        up = sum(1 for h in self.fleet.all() if h.connected)
        log.info("hypervisor hosts: %d of %d up", up, len(self.fleet.all()))

    async def stop(self) -> None:
        await self.fleet.close()

    async def reload(self) -> None:
        """Follow the hosts table: start new hosts, stop removed or changed ones."""
        async with self._reload_lock:
            rows = {name: (host_id, uri) for host_id, name, uri in await self.db.run(_watched_hosts)}
            for host in self.fleet.all():
                if host.name not in rows or rows[host.name] != (host.host_id, host.uri):
                    log.info("host %s is no longer watched", host.name)
                    await self.fleet.remove(host.name)
            for name, (host_id, uri) in rows.items():
                if name not in self.fleet:
                    host = self.fleet.add(host_id, name, uri)
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

    # ------------------------------------------------------------------ the fleet, as ctx.hosts offers it

    async def wait_settled(self, timeout: float | None = None) -> bool:
        """Wait until every host's first connection attempt has ended; False if some had not by ``timeout``."""
        return await self.fleet.wait_settled(timeout)

    def get(self, host_name: str) -> HostConnection:
        return self.fleet.get(host_name)

    def get_by_id(self, host_id: int) -> HostConnection:
        return self.fleet.get_by_id(host_id)

    def all(self) -> list[HostConnection]:
        return self.fleet.all()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run background work (a shutdown watch, ...) that ``stop()`` cancels."""
        return self.fleet.spawn(coro, name=name)

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
        """Write ``snapshot`` unless it is what was last written (and that was written lately).

        ``host.applied`` None means the host has just come (back) up; a write that must be done again
        sets ``host.applied_at`` to RECHECK_NOW instead, so that it never passes for a host coming up.
        """
        now = time.monotonic()
        slack = max(32, snapshot.facts.total_memory_mb // 100)
        if snapshot.same_as(host.applied, slack) and now - host.applied_at < DB_RECHECK:
            return
        assert host.host_id is not None
        for attempt in (1, 2):
            try:
                applied = await self._write(host.host_id, snapshot, host.last_seen_at, slack)
                break
            except IntegrityError as exc:  # another process inserted the same row first
                if attempt == 2:
                    host.applied_at = RECHECK_NOW
                    raise
                log.info("host %s: resync collided with another writer (%s); again", host.name,
                         type(exc.orig).__name__)
        host.applied, host.applied_at = snapshot, now
        if applied.skipped:
            # Rows that changed under the resync were left as their writer made them: read the host
            # again now, so they catch up with it at once rather than at the next event or interval. Only
            # the recheck is forced: ``applied`` None would say the host came up and run the host-up hooks.
            host.applied_at = RECHECK_NOW
            host.request_resync()
        if applied.changes:
            log.debug("host %s: %d change(s) written", host.name, applied.changes)

    async def _write(self, host_id: int, snapshot: HostSnapshot, seen_at: dt.datetime | None,
                     slack: int) -> hoststate.Applied:
        """Plan on a read without the write lock; take it, in a unit of its own, only when there is something to write.

        Most forced resyncs (every DB_RECHECK, a host coming up, a row skipped) find nothing to write, and
        on SQLite each one holding the write lock from BEGIN queued them all, and every other writer,
        behind one another. The plan's row writes are made only where a row is still the version read, so
        a plan read before another unit's commit is safe to write after it (the row is skipped, and the
        host read again), as on MariaDB and PostgreSQL, where the read never held a lock. The host row's
        own changes are decided again on the write's read; a row inserted meanwhile by another process is
        an IntegrityError, and the caller plans again.
        """
        plan = await self.plans.plan(hoststate.PlanRequest(host_id, snapshot, seen_at, slack,
                                                           self._unchanged.get(host_id)))
        if plan is not None and plan.unchanged is not None:
            self._unchanged[host_id] = plan.unchanged
        else:
            self._unchanged.pop(host_id, None)
        if plan is None or not plan.writes_anything:
            return hoststate.Applied(0)
        return await self.db.run(hoststate.write_plan, plan, lock=True)

    async def host_down(self, host: HostConnection, reason: str) -> None:
        assert host.host_id is not None
        self._unchanged.pop(host.host_id, None)
        await self.db.run(hoststate.apply_down, host.host_id, reason, last_seen_at=host.last_seen_at,
                              lock=True)
        log.warning("host %s is down: %s", host.name, reason)
