"""Opening a libvirt connection on a thread of its own, bounded by a timeout; closing one quietly.

libvirt has no connect timeout: a host that black-holes packets would hang
``libvirt.open`` for minutes. So each attempt runs on a new daemon thread and
the IOLoop waits for it at most ``timeout`` seconds; a connection that arrives
after the caller gave up is closed on arrival. On that thread the connection
also gets keepalive (remote URIs), its close callback and the domain
lifecycle events, registered once for that connection, before anyone sees it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import libvirt

from fogmachine.errors import HostUnreachable
from fogmachine.virt.errors import translate_connect
from fogmachine.virt.inventory import StaticFacts, read_static

KEEPALIVE_INTERVAL = 5  # seconds between keepalive probes on remote connections
KEEPALIVE_COUNT = 3  # unanswered probes before libvirt closes the connection

# libvirt's callbacks, run on its event thread (virt.events) with the IOLoop as their opaque argument.
CloseCallback = Callable[[libvirt.virConnect, int, asyncio.AbstractEventLoop], None]
EventCallback = Callable[[libvirt.virConnect, libvirt.virDomain, int, int, asyncio.AbstractEventLoop], None]


def is_remote(uri: str) -> bool:
    """Connections that go through a libvirtd (where keepalive applies), as opposed to in-process drivers."""
    scheme = uri.split(":", 1)[0]
    return scheme != "test" and not (scheme == "qemu" and "embed" in uri)


def host_file_of(uri: str) -> Path | None:
    """The host file of a ``test:///PATH`` URI (None for test:///default and other drivers)."""
    if not uri.startswith("test:///"):
        return None
    path = urlsplit(uri).path
    return None if path in ("", "/default") else Path(path)


async def open_connection(name: str, uri: str, *, timeout: float, loop: asyncio.AbstractEventLoop,
                          on_close: CloseCallback, on_event: EventCallback,
                          ) -> tuple[libvirt.virConnect, StaticFacts]:
    """Open ``uri`` for host ``name`` within ``timeout`` seconds; its callbacks report to ``loop``.

    Failures come as fogmachine.errors: ``HostUnreachable`` on timeout or a missing test host file, what
    ``translate_connect`` makes of libvirt's error otherwise.
    """
    path = host_file_of(uri)
    if path is not None and not path.is_file():
        # Checked here because libxml2 prints its own warning to stderr for a missing file.
        raise HostUnreachable(f"host {name}: test host file {path} does not exist")
    future: asyncio.Future[tuple[libvirt.virConnect, StaticFacts]] = loop.create_future()

    def deliver(result: Any, error: BaseException | None) -> None:
        if future.done():  # gave up waiting: close what arrived late
            if result is not None:
                threading.Thread(target=close_quietly, args=(result[0],), daemon=True).start()
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result = _open_blocking(uri, loop, on_close, on_event)
        except BaseException as exc:
            post(loop, deliver, None, exc)
        else:
            if not post(loop, deliver, result, None):
                close_quietly(result[0])

    threading.Thread(target=work, daemon=True, name=f"fm-connect-{name}").start()
    try:
        async with asyncio.timeout(timeout):
            return await future
    except TimeoutError:
        raise HostUnreachable(f"host {name} did not answer within {timeout:g} s at {uri}") from None
    except libvirt.libvirtError as exc:
        raise translate_connect(exc, host=name, uri=uri) from None


def _open_blocking(uri: str, loop: asyncio.AbstractEventLoop, on_close: CloseCallback,
                   on_event: EventCallback) -> tuple[libvirt.virConnect, StaticFacts]:
    conn = libvirt.open(uri)
    try:
        if is_remote(uri):
            try:
                conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
            except libvirt.libvirtError:
                pass  # driver without keepalive: the close callback still works
        static = read_static(conn)
        conn.registerCloseCallback(on_close, loop)
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_event, loop)
    except BaseException:
        close_quietly(conn)
        raise
    return conn, static


def post(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> bool:
    """call_soon_threadsafe that tolerates a closed loop (late callbacks after shutdown)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False
    return True


def close_quietly(conn: libvirt.virConnect) -> None:
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
