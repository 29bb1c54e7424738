"""One persistent libvirt connection per host, watched and kept alive.

A ``HostConnection`` owns the connection to one hypervisor for the life of the
server (the 2009 prototype opened one per call), and offers the calls on it
that the services make. Its background task:

1. opens the connection on a thread of its own, bounded by
   ``libvirt_connect_timeout`` (``virt.opening``: libvirt has no connect
   timeout; a host that black-holes packets would otherwise hang the caller
   for minutes), with keepalive on remote URIs, the close callback and domain
   lifecycle events registered once for that connection;
2. reads the host (``inventory.read_snapshot``) and hands it to the listener
   (``virt.listener``; in the server, services.hostwatch.HostManager, which
   writes the database), then again every ``resync_interval`` and whenever
   an event or an action asks for it (``virt.wakeup``);
3. when the connection drops, marks the host down at once (the close
   callback fires within milliseconds of a remote libvirtd dying) and reopens
   it with exponential backoff.

Every blocking libvirt call runs on a thread of its own (``CallThreads``, the
HostFleet's, shared by all hosts) with ``libvirt_call_timeout``: nothing
queues in front of a call, so a slow or hung host only ever slows itself. What runs there is in
``virt.inventory`` (reads), ``virt.domainops`` (one domain) and
``virt.volumes`` (storage); this module translates their errors. libvirt's
callbacks run on the event thread (``virt.events``) and only hand work to the
IOLoop with ``call_soon_threadsafe``.

At about 600 lines this is one thing, the connection's state and the one lock
and task that change it: its life cycle, its watcher, and the calls the
services make through it (a user's action included, whose outcome is folded
into the next snapshot), which all share ``_call``, the resync waiters and
the record of actions under way.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import random
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import libvirt

from fogmachine.errors import BackendTimeout, Conflict, FogmachineError, HostUnreachable, ValidationError
from fogmachine.states import GuestState, HostState
from fogmachine.timestamps import utcnow
from fogmachine.virt import console, domainops, events, volumes
from fogmachine.virt.callthreads import CallThreads
from fogmachine.virt.errors import translate
from fogmachine.virt.inventory import (
    EVENT_NAMES,
    DomainInfo,
    HostFacts,
    HostSnapshot,
    StaticFacts,
    XmlCache,
    read_snapshot,
    with_domains,
)
from fogmachine.virt.listener import Listener, NullListener
from fogmachine.virt.opening import close_quietly, open_connection, post
from fogmachine.virt.readgate import ReadGate, timed
from fogmachine.virt.wakeup import Wakeup

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# How long a host's answer to "do you have an active default pool?" is trusted: placement asks it on every
# checkout of a disk image, and pools are defined by hand, rarely.
POOL_TTL = 30.0
CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "connection lost (I/O error)",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "connection closed by the host",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "host stopped answering keepalives",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "connection closed",
}


# Events after which a domain's XML must be read again though its id is the same (see virt.inventory).
REDEFINING_EVENTS = (libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED)
# The state a lifecycle event says the domain is now in, where it says one.
EVENT_STATES = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: GuestState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: GuestState.PAUSED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: GuestState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_STOPPED: GuestState.SHUTOFF,
}
# What a user's action calls on the domain (``act``), and the libvirt state it leaves the domain in when the
# call returns; None: the guest decides (a shutdown or reboot request), the state is read after it.
ACTIONS: dict[str, tuple[Callable[[libvirt.virDomain], Any], int | None]] = {
    "start": (lambda d: d.create(), libvirt.VIR_DOMAIN_RUNNING),
    "shutdown": (lambda d: d.shutdown(), None),
    "destroy": (lambda d: d.destroy(), libvirt.VIR_DOMAIN_SHUTOFF),
    "reboot": (lambda d: d.reboot(0), None),
    "pause": (lambda d: d.suspend(), libvirt.VIR_DOMAIN_PAUSED),
    "unpause": (lambda d: d.resume(), libvirt.VIR_DOMAIN_RUNNING),
}


def _timed_read(conn: libvirt.virConnect, static: StaticFacts | None,
                cache: XmlCache) -> tuple[HostSnapshot, float, float]:
    """``read_snapshot`` with its wall and CPU times, for the fleet's ReadGate (on the call thread)."""
    return timed(read_snapshot, conn, static, cache)


@dataclass(frozen=True)
class DomainEvent:
    at: float  # time.time()
    domain: str
    event: str  # STARTED, STOPPED, ...
    detail: int


class HostConnection:
    """The live link to one hypervisor; see the module docstring."""

    def __init__(self, name: str, uri: str, *, host_id: int | None = None, connect_timeout: float = 5,
                 call_timeout: float = 30, resync_interval: float = 60, listener: Listener | None = None,
                 threads: CallThreads | None = None, read_gate: ReadGate | None = None) -> None:
        self.name = name
        self.uri = uri
        self.host_id = host_id
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.resync_interval = resync_interval
        self.listener: Listener = listener or NullListener()
        self.state: str = HostState.UNKNOWN
        self.reason = ""
        self.last_seen_at: dt.datetime | None = None  # naive UTC of the last successful read
        self.static: StaticFacts | None = None
        self.recent_events: collections.deque[DomainEvent] = collections.deque(maxlen=200)
        # The listener's record of what it last wrote for this host (None: compare with the DB). Kept here
        # because it lives and dies with the connection: a host marked down forgets it (``_went_down``).
        self.applied: HostSnapshot | None = None
        self.applied_at = 0.0
        self.resyncs = 0
        self._conn: libvirt.virConnect | None = None
        self._cache = XmlCache()
        # The last snapshot handed to the listener (what actions change), and the actions since: uuid ->
        # (reads begun when the action ended, the domain as the action left it). See ``act``.
        self._snapshot: HostSnapshot | None = None
        self._acted: dict[str, tuple[int, DomainInfo]] = {}
        self._reads_begun = 0
        # Domains (by name) with an action in flight, and the events for them held until it ends (``act``).
        self._acting: dict[str, int] = {}
        self._held: dict[str, list[tuple[str, int]]] = {}
        # The HostFleet's call threads, shared by its hosts; a host on its own gets (and later shuts down) its own.
        self._owns_threads = threads is None
        self._threads = threads if threads is not None else CallThreads(name=f"fm-virt-{name}")
        self._inflight: set[futures.Future[Any]] = set()  # this host's calls still running
        self._read_gate = read_gate  # the fleet's bound on whole-host reads at once (HostFleet)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: Wakeup | None = None
        self._stop_event: asyncio.Event | None = None
        self._settled: asyncio.Event | None = None
        self._apply_lock: asyncio.Lock | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        # (connection, monotonic time, pool path or None): what pool_path() last learnt, on which connection.
        self._pool_seen: tuple[Any, float, str | None] | None = None

    def __repr__(self) -> str:
        return f"<HostConnection {self.name} {self.uri} {self.state}>"

    # ------------------------------------------------------------------ life cycle

    async def watch(self) -> None:
        """Start watching the host in the background; returns at once."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = Wakeup(self._loop)
        self._stop_event = asyncio.Event()
        self._settled = asyncio.Event()
        self._apply_lock = asyncio.Lock()
        events.ensure_running()
        self._task = self._loop.create_task(self._run(), name=f"fm-host-{self.name}")

    async def wait_settled(self, timeout: float | None = None) -> bool:
        """Wait until the first connection attempt ended (up or down); False on timeout."""
        if self._settled is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await self._settled.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop watching, wait for this host's calls to end, close the connection."""
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
            assert self._wake is not None
            self._wake.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(self.call_timeout):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
            except Exception:
                log.exception("host %s: watcher failed while stopping", self.name)
        for task in list(self._side_tasks):
            task.cancel()
        self._fail_waiters(HostUnreachable(f"host {self.name}: Fogmachine is stopping"))
        conn, self._conn = self._conn, None
        if self._inflight:
            _, running = await asyncio.to_thread(futures.wait, list(self._inflight), self.call_timeout)
            if running:
                log.warning("host %s: %d libvirt call(s) still blocked; closing anyway", self.name, len(running))
        if conn is not None:
            try:
                async with asyncio.timeout(self.call_timeout):
                    await asyncio.to_thread(close_quietly, conn)
            except TimeoutError:
                log.warning("host %s: closing the connection timed out", self.name)
        if self._owns_threads:
            self._threads.shutdown(wait=False)

    @property
    def connected(self) -> bool:
        return self._conn is not None

    # ------------------------------------------------------------------ watcher

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        while not self._stopping:
            try:
                await self._open()
            except Exception as exc:
                if self._stopping:
                    break
                if isinstance(exc, FogmachineError):
                    reason = exc.message
                else:  # a bug or a resource problem: the watcher must survive it and retry
                    log.exception("host %s: opening the connection failed", self.name)
                    reason = f"host {self.name} could not be opened: internal error {type(exc).__name__}"
                await self._went_down(reason)
                assert self._settled is not None
                self._settled.set()
                log.info("host %s unreachable (%s); retrying in %.1f s", self.name, reason, backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF
            log.info("host %s connected (%s)", self.name, self.uri)
            await self._watch()
            if not self._stopping:
                await self._pause(MIN_BACKOFF)

    async def _pause(self, seconds: float) -> None:
        assert self._stop_event is not None
        try:
            async with asyncio.timeout(seconds):
                await self._stop_event.wait()
        except TimeoutError:
            pass

    def _next_interval(self) -> float:
        # Jitter keeps a hundred hosts started together from resyncing in lockstep.
        return self.resync_interval * random.uniform(0.9, 1.1)

    async def _watch(self) -> None:
        assert self._wake is not None and self._settled is not None
        while self._conn is not None and not self._stopping:
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            conn = self._conn
            self._reads_begun += 1
            begun = self._reads_begun
            try:
                if self._read_gate is None:
                    snapshot = await self._call(read_snapshot, self.static, self._cache, action="resync")
                else:
                    async with self._read_gate.slot():
                        snapshot, wall, cpu = await self._call(_timed_read, self.static, self._cache,
                                                               action="resync")
                    self._read_gate.record(wall, cpu)
                await self._apply_up(conn, snapshot, begun)
            except FogmachineError as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                if not isinstance(exc, HostUnreachable):
                    log.warning("host %s: resync failed: %s", self.name, exc.message)
            except Exception as exc:
                log.exception("host %s: resync failed", self.name)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            else:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            self._settled.set()
            if self._waiters or self._conn is None or self._stopping:
                continue
            await self._wake.wait(self._next_interval())

    async def _apply_up(self, conn: libvirt.virConnect, snapshot: HostSnapshot, begun: int) -> None:
        """Hand the ``begun``-th read's snapshot to the listener."""
        assert self._apply_lock is not None
        async with self._apply_lock:
            if conn is not self._conn:  # closed while we were reading: the down mark wins
                return
            snapshot = self._with_actions(snapshot, begun)
            self.state, self.reason = HostState.UP, ""
            self.last_seen_at = utcnow()
            self.resyncs += 1
            self._snapshot = snapshot
            await self.listener.host_up(self, snapshot)

    async def _went_down(self, reason: str) -> None:
        assert self._apply_lock is not None
        async with self._apply_lock:
            if self._conn is not None:  # reconnected meanwhile
                return
            changed = (self.state, self.reason) != (HostState.DOWN, reason)
            self.state, self.reason = HostState.DOWN, reason
            self.applied = None
            self._snapshot, self._acted = None, {}
            if changed:
                try:
                    await self.listener.host_down(self, reason)
                except Exception:
                    self.reason = ""  # so the next attempt writes it again
                    log.exception("host %s: recording that it is down failed", self.name)

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _drop(self, conn: libvirt.virConnect, reason: str) -> None:
        """The connection is dead: forget it, mark the host down now, let the watcher reconnect."""
        if conn is not self._conn:
            return
        self._conn = None
        self._cache.clear()
        log.warning("host %s down: %s", self.name, reason)
        self._fail_waiters(HostUnreachable(f"host {self.name} cannot be reached: {reason}"))
        threading.Thread(target=close_quietly, args=(conn,), daemon=True, name=f"fm-close-{self.name}").start()
        self._spawn(self._went_down(reason))
        assert self._wake is not None
        self._wake.set()

    def _fail_waiters(self, exc: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)

    # ------------------------------------------------------------------ opening

    async def _open(self) -> None:
        assert self._loop is not None
        conn, static = await open_connection(self.name, self.uri, timeout=self.connect_timeout, loop=self._loop,
                                             on_close=self._close_callback, on_event=self._event_callback)
        self.static = static
        self._cache.clear()
        self._snapshot, self._acted = None, {}
        self._conn = conn

    # Both callbacks run on libvirt's event thread: no libvirt RPC here, only hand-off.
    def _close_callback(self, conn: libvirt.virConnect, reason: int, loop: asyncio.AbstractEventLoop) -> None:
        post(loop, self._closed, conn, reason)

    def _event_callback(self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int,
                        loop: asyncio.AbstractEventLoop) -> None:
        try:
            name, uuid = dom.name(), dom.UUIDString()
        except libvirt.libvirtError:
            return
        post(loop, self._domain_event, conn, name, uuid, event, detail)

    def _closed(self, conn: libvirt.virConnect, reason: int) -> None:
        self._drop(conn, CLOSE_REASONS.get(reason, "connection closed"))

    def _domain_event(self, conn: libvirt.virConnect, name: str, uuid: str, event: int, detail: int) -> None:
        if conn is not self._conn:
            return
        self.recent_events.append(DomainEvent(time.time(), name, EVENT_NAMES.get(event, str(event)), detail))
        if event in REDEFINING_EVENTS:  # any other event changes the state or the id, which a read sees
            self._cache.drop(uuid)
        if name in self._acting:  # maybe the action's own echo, which only its end can tell
            self._held.setdefault(name, []).append((uuid, event))
        else:
            self._after_event(uuid, event)

    def _after_event(self, uuid: str, event: int) -> None:
        """Read the host, unless the event only says what an action already recorded (see ``act``)."""
        acted = self._acted.get(uuid)
        if acted is None or EVENT_STATES.get(event) != acted[1].state:
            self.request_resync()

    # ------------------------------------------------------------------ calls

    async def _call(self, fn: Callable[..., T], *args: Any, action: str, guest: str | None = None) -> T:
        """Run ``fn(conn, *args)`` on a call thread with the call timeout; translate errors."""
        conn = self._conn
        if conn is None:
            reason = f": {self.reason}" if self.reason else ""
            raise HostUnreachable(f"host {self.name} is down{reason}", details={"host": self.name})
        assert self._loop is not None
        job = self._threads.submit(fn, conn, *args)
        self._inflight.add(job)
        job.add_done_callback(self._inflight.discard)
        future = asyncio.wrap_future(job, loop=self._loop)
        expired = []  # a call_later handle rather than wait_for: no extra task per call

        def expire() -> None:
            expired.append(True)
            future.cancel()

        handle = self._loop.call_later(self.call_timeout, expire)
        try:
            result: T = await future
            return result
        except asyncio.CancelledError:
            if not expired:
                raise
            raise BackendTimeout(f"host {self.name} did not finish {action} within {self.call_timeout:g} s",
                                 details={"host": self.name}) from None
        except libvirt.libvirtError as exc:
            error = translate(exc, host=self.name, action=action, guest=guest)
            if isinstance(error, HostUnreachable):
                self._drop(conn, error.message)
            raise error from None
        finally:
            handle.cancel()

    def request_resync(self) -> None:
        """Ask for a resync soon (coalesced with any already asked for)."""
        if self._wake is not None:
            self._wake.set()

    async def resync(self) -> None:
        """Resync now and wait until the result is in the database."""
        if self._conn is None or self._loop is None:
            reason = f": {self.reason}" if self.reason else ""
            raise HostUnreachable(f"host {self.name} is down{reason}", details={"host": self.name})
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        self.request_resync()
        await waiter

    async def snapshot(self) -> HostSnapshot:
        assert self.static is not None or self._conn is None
        return await self._call(read_snapshot, self.static, self._cache, action="list domains")

    async def list_domains(self) -> list[DomainInfo]:
        return list((await self.snapshot()).domains)

    async def facts(self) -> HostFacts:
        return (await self.snapshot()).facts

    async def domain(self, name: str, *, label: str | None = None) -> DomainInfo:
        """One domain, read fresh (no cache)."""
        return await self._call(domainops.lookup_info, name, action="read", guest=label or name)

    async def define(self, xml: str) -> DomainInfo:
        try:
            label = ET.fromstring(xml).findtext("name") or None
        except ET.ParseError:
            raise ValidationError("domain XML is not well-formed") from None
        info = await self._call(domainops.define, xml, action="define", guest=label)
        self.request_resync()
        return info

    async def _domain_op(self, name: str, op: Callable[[libvirt.virDomain], Any], action: str,
                         label: str | None) -> None:
        await self._call(domainops.on_domain, name, op, action=action, guest=label or name)
        self.request_resync()

    async def start(self, name: str, *, label: str | None = None) -> None:
        await self._domain_op(name, lambda d: d.create(), "start", label)

    async def shutdown(self, name: str, *, label: str | None = None) -> None:
        await self._domain_op(name, lambda d: d.shutdown(), "shutdown", label)

    async def destroy(self, name: str, *, label: str | None = None) -> None:
        await self._domain_op(name, lambda d: d.destroy(), "destroy", label)

    async def reboot(self, name: str, *, label: str | None = None) -> None:
        await self._domain_op(name, lambda d: d.reboot(0), "reboot", label)

    async def suspend(self, name: str, *, label: str | None = None) -> None:
        await self._domain_op(name, lambda d: d.suspend(), "pause", label)

    async def resume(self, name: str, *, label: str | None = None) -> None:
        await self._domain_op(name, lambda d: d.resume(), "unpause", label)

    async def act(self, name: str, action: str, *, label: str | None = None,
                  refuse: Callable[[str], str | None] | None = None) -> int:
        """A user's ``action`` (one of ACTIONS) on domain ``name``; the domain's id before it.

        One call thread does it all (``domainops.act``): the look-up, the state, which ``refuse`` may
        turn into a ``Conflict`` with its sentence (nothing is done then), and the operation. What the
        action left the domain in goes to the listener at once, in the last snapshot of the host, rather
        than after a read of the whole host (which cost five of an action's eight round trips over a
        network, bench/virt_network.py). The action's own lifecycle events, which say nothing new, read
        nothing (``_after_event``); any other change does, as always.

        A read that began before the action ended may have seen the domain as it was: until a read that
        began after it, the action's outcome stands over what such a read says of that domain
        (``_with_actions``).
        """
        op, leaves = ACTIONS[action]
        self._acting[name] = self._acting.get(name, 0) + 1
        try:
            acted = await self._call(domainops.act, name, op, leaves, refuse, action=action, guest=label or name)
            if acted.refused:
                raise Conflict(acted.refused, details={"state": acted.state})
            await self._note(acted, self._reads_begun)
        finally:
            self._acting[name] -= 1
            if not self._acting[name]:
                del self._acting[name]
                for uuid, event in self._held.pop(name, []):
                    self._after_event(uuid, event)
        return acted.domain_id

    async def _note(self, acted: domainops.Acted, ended: int) -> None:
        """Hand the action's outcome to the listener in the last snapshot; a fresh read when that lacks it."""
        assert self._apply_lock is not None and acted.after_state is not None and acted.after_id is not None
        base = self._snapshot
        before = next((d for d in base.domains if d.uuid == acted.uuid), None) if base is not None else None
        if before is None or self.static is None:  # defined since the last read: read the whole host
            try:
                await self.resync()
            except FogmachineError as exc:
                log.info("resync after an action on %s failed: %s", self.name, exc.message)
            return
        after = acted.after or replace(before, state=acted.after_state, domain_id=acted.after_id)
        self._acted[acted.uuid] = (ended, after)
        async with self._apply_lock:
            if self._snapshot is None or self._conn is None:  # went down meanwhile: the down mark wins
                return
            self._snapshot = with_domains(self._snapshot, self.static, {acted.uuid: after})
            self.last_seen_at = utcnow()
            try:
                await self.listener.host_up(self, self._snapshot)
            except FogmachineError as exc:
                log.info("host %s: recording an action's outcome failed: %s", self.name, exc.message)

    def _with_actions(self, snapshot: HostSnapshot, begun: int) -> HostSnapshot:
        """``snapshot`` (from the read that was the ``begun``-th) with the outcome of actions it may have missed."""
        if not self._acted:
            return snapshot
        missed = {uuid: info for uuid, (ended, info) in self._acted.items() if begun <= ended}
        self._acted = {uuid: self._acted[uuid] for uuid in missed}  # later reads saw the others themselves
        if not missed or self.static is None:
            return snapshot
        return with_domains(snapshot, self.static, missed)

    async def undefine(self, name: str, *, label: str | None = None) -> None:
        await self._domain_op(name, domainops.undefine, "undefine", label)

    async def redefine(self, name: str, edit: Callable[[str], str | None], *, label: str | None = None) -> bool:
        """Apply ``edit`` to the domain's persistent XML and define the result; False when ``edit`` returns None.

        Only the persistent configuration changes: a running domain keeps running as it is and picks the
        change up at its next boot. The XML is read with its secrets (a VNC password) so none is lost.
        """
        changed = await self._call(domainops.redefine, name, edit, action="redefine", guest=label or name)
        if changed:
            self.request_resync()
        return changed

    async def open_console(self, name: str, *, force: bool, on_data: Callable[[bytes], None],
                           on_end: Callable[[str], None], label: str | None = None) -> console.SerialConsole:
        """A session on domain ``name``'s serial console over this connection (``virt.console``); ``force``
        takes it over from any other session. Refused with a ``Conflict`` while another session holds it."""
        assert self._loop is not None
        return await self._call(console.open_serial, name, force, self._loop, on_data, on_end, self.name,
                                action="open the console", guest=label or name)

    async def vnc_endpoint(self, name: str, *, label: str | None = None) -> console.VncEndpoint:
        """Where domain ``name``'s VNC server is reachable from here, and its password (live XML)."""
        xml = await self._call(console.secure_xml, name, action="read the graphical console", guest=label or name)
        return console.vnc_endpoint(xml, self.uri)

    async def pool_path(self) -> str | None:
        """Where the host's active ``default`` pool keeps its volumes, or None when it has none.

        Remembered for POOL_TTL seconds on the same connection (and forgotten early when create_volume finds
        the pool gone), so placing a disk image costs no libvirt call per host on every checkout.
        """
        conn, seen = self._conn, self._pool_seen
        if seen is not None and seen[0] is conn and conn is not None and time.monotonic() - seen[1] < POOL_TTL:
            return seen[2]
        path = await self._call(volumes.pool_path, action="read the storage pool")
        self._pool_seen = (conn, time.monotonic(), path)
        return path

    async def create_volume(self, name: str, size_gb: int, *, backing: str | None = None,
                            backing_format: str = "qcow2") -> str | None:
        """A qcow2 volume NAME.qcow2 in the host's ``default`` pool; None when there is no such pool.

        With ``backing`` (an image's path on the host) the volume is a copy-on-write overlay of it: the guest
        gets the image's contents at once and writes only its own changes, the image itself is never
        written. ``size_gb`` 0 then means the image's own size (a bigger size grows the guest's disk).
        """
        volumes.check_volume(name, size_gb, backing, backing_format)
        conn = self._conn
        path = await self._call(volumes.create_volume, name, size_gb, backing, backing_format, action="create volume",
                                guest=name)
        if path is None:
            self._pool_seen = (conn, time.monotonic(), None)
        return path

    async def delete_volume(self, path: str) -> None:
        await self._call(volumes.delete_volume, path, action="delete volume")

