"""One persistent libvirt connection per host, watched and kept alive.

A ``HostConnection`` owns the connection to one hypervisor for the life of the
server (the 2009 prototype opened one per call). Its background task:

1. opens the connection on a thread of its own, bounded by
   ``libvirt_connect_timeout`` (libvirt has no connect timeout; a host that
   black-holes packets would otherwise hang the caller for minutes), sets
   keepalive on remote URIs, registers the close callback and domain lifecycle
   events once for that connection;
2. reads the host (``inventory.read_snapshot``) and hands it to the listener
   (in the server, services.hostwatch.HostManager, which writes the
   database), then again every
   ``resync_interval`` and whenever an event or an action asks for it;
3. when the connection drops, marks the host down at once (the close
   callback fires within milliseconds of a remote libvirtd dying) and reopens
   it with exponential backoff.

Every blocking libvirt call runs on a ``CallPool`` (the HostFleet's, shared
by all hosts) with ``libvirt_call_timeout``; the pool replaces a thread that
hangs in a call, so a slow host only ever slows itself. libvirt's callbacks
run on the event thread (``virt.events``) and only hand work to the IOLoop
with ``call_soon_threadsafe``.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import libvirt

from fogmachine.errors import BackendTimeout, FogmachineError, HostUnreachable, ValidationError
from fogmachine.states import HostState, utcnow
from fogmachine.virt import events
from fogmachine.virt.callpool import CallPool
from fogmachine.virt.domainxml import DISK_FORMATS, NAME_RE
from fogmachine.virt.errors import translate, translate_connect
from fogmachine.virt.inventory import (
    EVENT_NAMES,
    DomainInfo,
    HostFacts,
    HostSnapshot,
    StaticFacts,
    XmlCache,
    domain_info,
    read_snapshot,
    read_static,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
KEEPALIVE_INTERVAL = 5  # seconds between keepalive probes on remote connections
KEEPALIVE_COUNT = 3  # unanswered probes before libvirt closes the connection
STORAGE_POOL = "default"
# How long a host's answer to "do you have an active default pool?" is trusted: placement asks it on every
# checkout of a disk image, and pools are defined by hand, rarely.
POOL_TTL = 30.0
CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "connection lost (I/O error)",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "connection closed by the host",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "host stopped answering keepalives",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "connection closed",
}
_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
    0,
)


class Listener(Protocol):
    """Where a HostConnection reports what it learns (in the server, services.hostwatch.HostManager,
    which writes the DB; the adapter itself never does)."""

    async def host_up(self, host: HostConnection, snapshot: HostSnapshot) -> None: ...

    async def host_down(self, host: HostConnection, reason: str) -> None: ...


class _NullListener:
    async def host_up(self, host: HostConnection, snapshot: HostSnapshot) -> None:
        return None

    async def host_down(self, host: HostConnection, reason: str) -> None:
        return None


@dataclass(frozen=True)
class DomainEvent:
    at: float  # time.time()
    domain: str
    event: str  # STARTED, STOPPED, ...
    detail: int


def is_remote(uri: str) -> bool:
    """Connections that go through a libvirtd (where keepalive applies), as opposed to in-process drivers."""
    scheme = uri.split(":", 1)[0]
    return scheme != "test" and not (scheme == "qemu" and "embed" in uri)


def _test_file(uri: str) -> Path | None:
    """The host file of a ``test:///PATH`` URI (None for test:///default and other drivers)."""
    if not uri.startswith("test:///"):
        return None
    path = urlsplit(uri).path
    return None if path in ("", "/default") else Path(path)


class _Wakeup:
    """A flag the watcher sleeps on with a timeout.

    Cheaper than ``asyncio.Event`` + ``wait_for`` (which wraps every wait in a
    task): with a hundred hosts resyncing at once, that overhead was a third of
    a resync's cost (bench/virt_fleet_sweep.py).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._flag = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self, timeout: float) -> None:
        if self._flag:
            return
        future = self._future = self._loop.create_future()
        handle = self._loop.call_later(timeout, _resolve, future)
        try:
            await future
        finally:
            handle.cancel()
            self._future = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class HostConnection:
    """The live link to one hypervisor; see the module docstring."""

    def __init__(self, name: str, uri: str, *, host_id: int | None = None, connect_timeout: float = 5,
                 call_timeout: float = 30, resync_interval: float = 60, listener: Listener | None = None,
                 pool: CallPool | None = None) -> None:
        self.name = name
        self.uri = uri
        self.host_id = host_id
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.resync_interval = resync_interval
        self.listener: Listener = listener or _NullListener()
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
        # The HostFleet's pool, shared by its hosts; a host on its own gets (and later shuts down) one.
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else CallPool(2, name=f"fm-virt-{name}")
        self._inflight: set[futures.Future[Any]] = set()  # this host's calls still running on the pool
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: _Wakeup | None = None
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
        self._wake = _Wakeup(self._loop)
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
            await asyncio.wait_for(self._settled.wait(), timeout)
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
                await asyncio.wait_for(asyncio.shield(self._task), self.call_timeout)
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
                await asyncio.wait_for(asyncio.to_thread(_close_quietly, conn), self.call_timeout)
            except TimeoutError:
                log.warning("host %s: closing the connection timed out", self.name)
        if self._owns_pool:
            self._pool.shutdown(wait=False)

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
            await asyncio.wait_for(self._stop_event.wait(), seconds)
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
            try:
                snapshot = await self._call(read_snapshot, self.static, self._cache, action="resync")
                await self._apply_up(conn, snapshot)
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

    async def _apply_up(self, conn: libvirt.virConnect, snapshot: HostSnapshot) -> None:
        assert self._apply_lock is not None
        async with self._apply_lock:
            if conn is not self._conn:  # closed while we were reading: the down mark wins
                return
            self.state, self.reason = HostState.UP, ""
            self.last_seen_at = utcnow()
            self.resyncs += 1
            await self.listener.host_up(self, snapshot)

    async def _went_down(self, reason: str) -> None:
        assert self._apply_lock is not None
        async with self._apply_lock:
            if self._conn is not None:  # reconnected meanwhile
                return
            changed = (self.state, self.reason) != (HostState.DOWN, reason)
            self.state, self.reason = HostState.DOWN, reason
            self.applied = None
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
        threading.Thread(target=_close_quietly, args=(conn,), daemon=True, name=f"fm-close-{self.name}").start()
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
        path = _test_file(self.uri)
        if path is not None and not path.is_file():
            # Checked here because libxml2 prints its own warning to stderr for a missing file.
            raise HostUnreachable(f"host {self.name}: test host file {path} does not exist")
        assert self._loop is not None
        loop = self._loop
        future: asyncio.Future[tuple[libvirt.virConnect, StaticFacts]] = loop.create_future()

        def deliver(result: Any, error: BaseException | None) -> None:
            if future.done():  # gave up waiting: close what arrived late
                if result is not None:
                    threading.Thread(target=_close_quietly, args=(result[0],), daemon=True).start()
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def work() -> None:
            try:
                result = self._open_blocking(loop)
            except BaseException as exc:
                _post(loop, deliver, None, exc)
            else:
                if not _post(loop, deliver, result, None):
                    _close_quietly(result[0])

        threading.Thread(target=work, daemon=True, name=f"fm-connect-{self.name}").start()
        try:
            conn, static = await asyncio.wait_for(future, self.connect_timeout)
        except TimeoutError:
            raise HostUnreachable(
                f"host {self.name} did not answer within {self.connect_timeout:g} s at {self.uri}") from None
        except libvirt.libvirtError as exc:
            raise translate_connect(exc, host=self.name, uri=self.uri) from None
        self.static = static
        self._cache.clear()
        self._conn = conn

    def _open_blocking(self, loop: asyncio.AbstractEventLoop) -> tuple[libvirt.virConnect, StaticFacts]:
        conn = libvirt.open(self.uri)
        try:
            if is_remote(self.uri):
                try:
                    conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
                except libvirt.libvirtError:
                    pass  # driver without keepalive: the close callback still works
            static = read_static(conn)
            conn.registerCloseCallback(self._close_callback, loop)
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._event_callback, loop)
        except BaseException:
            _close_quietly(conn)
            raise
        return conn, static

    # Both callbacks run on libvirt's event thread: no libvirt RPC here, only hand-off.
    def _close_callback(self, conn: libvirt.virConnect, reason: int, loop: asyncio.AbstractEventLoop) -> None:
        _post(loop, self._closed, conn, reason)

    def _event_callback(self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int,
                        loop: asyncio.AbstractEventLoop) -> None:
        try:
            name, uuid = dom.name(), dom.UUIDString()
        except libvirt.libvirtError:
            return
        _post(loop, self._domain_event, conn, name, uuid, event, detail)

    def _closed(self, conn: libvirt.virConnect, reason: int) -> None:
        self._drop(conn, CLOSE_REASONS.get(reason, "connection closed"))

    def _domain_event(self, conn: libvirt.virConnect, name: str, uuid: str, event: int, detail: int) -> None:
        if conn is not self._conn:
            return
        self.recent_events.append(DomainEvent(time.time(), name, EVENT_NAMES.get(event, str(event)), detail))
        self._cache.drop(uuid)
        self.request_resync()

    # ------------------------------------------------------------------ calls

    async def _call(self, fn: Callable[..., T], *args: Any, action: str, guest: str | None = None) -> T:
        """Run ``fn(conn, *args)`` on the call pool with the call timeout; translate errors."""
        conn = self._conn
        if conn is None:
            reason = f": {self.reason}" if self.reason else ""
            raise HostUnreachable(f"host {self.name} is down{reason}", details={"host": self.name})
        assert self._loop is not None
        job = self._pool.submit(fn, conn, *args)
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
        return await self._call(_lookup_info, name, action="read", guest=label or name)

    async def define(self, xml: str) -> DomainInfo:
        try:
            label = ET.fromstring(xml).findtext("name") or None
        except ET.ParseError:
            raise ValidationError("domain XML is not well-formed") from None
        info = await self._call(_define, xml, action="define", guest=label)
        self.request_resync()
        return info

    async def _domain_op(self, name: str, op: Callable[[libvirt.virDomain], Any], action: str,
                         label: str | None) -> None:
        await self._call(_on_domain, name, op, action=action, guest=label or name)
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

    async def undefine(self, name: str, *, label: str | None = None) -> None:
        await self._domain_op(name, _undefine, "undefine", label)

    async def redefine(self, name: str, edit: Callable[[str], str | None], *, label: str | None = None) -> bool:
        """Apply ``edit`` to the domain's persistent XML and define the result; False when ``edit`` returns None.

        Only the persistent configuration changes: a running domain keeps running as it is and picks the
        change up at its next boot. The XML is read with its secrets (a VNC password) so none is lost.
        """
        changed = await self._call(_redefine, name, edit, action="redefine", guest=label or name)
        if changed:
            self.request_resync()
        return changed

    async def pool_path(self) -> str | None:
        """Where the host's active ``default`` pool keeps its volumes, or None when it has none.

        Remembered for POOL_TTL seconds on the same connection (and forgotten early when create_volume finds
        the pool gone), so placing a disk image costs no libvirt call per host on every checkout.
        """
        conn, seen = self._conn, self._pool_seen
        if seen is not None and seen[0] is conn and conn is not None and time.monotonic() - seen[1] < POOL_TTL:
            return seen[2]
        path = await self._call(_pool_path, action="read the storage pool")
        self._pool_seen = (conn, time.monotonic(), path)
        return path

    async def create_volume(self, name: str, size_gb: int, *, backing: str | None = None,
                            backing_format: str = "qcow2") -> str | None:
        """A qcow2 volume NAME.qcow2 in the host's ``default`` pool; None when there is no such pool.

        With ``backing`` (an image's path on the host) the volume is a copy-on-write overlay of it: the guest
        gets the image's contents at once and writes only its own changes, the image itself is never
        written. ``size_gb`` 0 then means the image's own size (a bigger size grows the guest's disk).
        """
        if not NAME_RE.fullmatch(name):
            raise ValidationError("volume name must be 1-63 letters, digits, '.', '_' or '-'", field="name")
        smallest = 0 if backing else 1
        if isinstance(size_gb, bool) or not isinstance(size_gb, int) or size_gb < smallest:
            raise ValidationError("disk size must be a positive number of GiB", field="disk_gb")
        if backing is not None and (not backing.startswith("/") or "\0" in backing):
            raise ValidationError(f"disk image {backing!r} must be an absolute path on the host", field="image")
        if backing_format not in DISK_FORMATS:
            raise ValidationError(f"image format must be one of {', '.join(DISK_FORMATS)}", field="image_format")
        conn = self._conn
        path = await self._call(_create_volume, name, size_gb, backing, backing_format, action="create volume",
                                guest=name)
        if path is None:
            self._pool_seen = (conn, time.monotonic(), None)
        return path

    async def delete_volume(self, path: str) -> None:
        await self._call(_delete_volume, path, action="delete volume")


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> bool:
    """call_soon_threadsafe that tolerates a closed loop (late callbacks after shutdown)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False
    return True


def _close_quietly(conn: libvirt.virConnect) -> None:
    """Drop our callbacks and close; on a dead connection each step may fail, none matters."""
    for callback_id in list(getattr(conn, "domainEventCallbackID", {})):
        try:
            conn.domainEventDeregisterAny(callback_id)
        except (libvirt.libvirtError, KeyError):
            pass
    for step in (conn.unregisterCloseCallback, conn.close):
        try:
            step()
        except libvirt.libvirtError:
            pass


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    return conn.lookupByName(name)


def _lookup_info(conn: libvirt.virConnect, name: str) -> DomainInfo:
    dom = _lookup(conn, name)
    return domain_info(dom, dom.state()[0])


def _on_domain(conn: libvirt.virConnect, name: str, op: Callable[[libvirt.virDomain], Any]) -> None:
    op(_lookup(conn, name))


def _define(conn: libvirt.virConnect, xml: str) -> DomainInfo:
    dom = conn.defineXML(xml)
    return domain_info(dom, dom.state()[0])


def _undefine(dom: libvirt.virDomain) -> None:
    last: libvirt.libvirtError | None = None
    for flags in _UNDEFINE_FLAGS:
        try:
            dom.undefineFlags(flags) if flags else dom.undefine()
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise
            last = exc
    assert last is not None
    raise last


def _redefine(conn: libvirt.virConnect, name: str, edit: Callable[[str], str | None]) -> bool:
    dom = _lookup(conn, name)
    xml = edit(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
    if xml is None:
        return False
    conn.defineXML(xml)
    return True


def _default_pool(conn: libvirt.virConnect) -> libvirt.virStoragePool | None:
    try:
        pool = conn.storagePoolLookupByName(STORAGE_POOL)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise
    return pool if pool.isActive() else None


def _pool_path(conn: libvirt.virConnect) -> str | None:
    pool = _default_pool(conn)
    if pool is None:
        return None
    return ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") or ""


def volume_xml(name: str, size_gb: int, backing: str | None = None, backing_format: str = "qcow2") -> str:
    """libvirt storage volume XML for NAME.qcow2; an overlay of ``backing`` when given (capacity left out
    when ``size_gb`` is 0: libvirt then takes the image's own size)."""
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = f"{name}.qcow2"
    if size_gb > 0:
        ET.SubElement(volume, "capacity", unit="G").text = str(size_gb)
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type="qcow2")
    if backing is not None:
        store = ET.SubElement(volume, "backingStore")
        ET.SubElement(store, "path").text = backing
        ET.SubElement(store, "format", type=backing_format)
    return ET.tostring(volume, encoding="unicode")


def _create_volume(conn: libvirt.virConnect, name: str, size_gb: int, backing: str | None,
                   backing_format: str) -> str | None:
    pool = _default_pool(conn)
    if pool is None:
        return None
    return str(pool.createXML(volume_xml(name, size_gb, backing, backing_format), 0).path())


def _delete_volume(conn: libvirt.virConnect, path: str) -> None:
    conn.storageVolLookupByPath(path).delete(0)
