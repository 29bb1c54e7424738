"""A guest's consoles on the host connection Fogmachine already holds: the serial stream, the VNC server.

**Serial.** ``open_serial`` (on a call thread) makes a non-blocking libvirt stream on the host's
connection and attaches it to the domain's first console (the serial port, which must be a ``pty``:
``domainxml`` writes ``<serial type='pty'>`` with a ``<log>`` file for the guest page's tail). Nothing
else is opened on the host: the bytes ride the libvirt connection (TCP or SSH, as configured), so a
console works wherever Fogmachine reaches the host. ``force`` is libvirt's take-over: the host ends any
other session on that console, this process's or another's.

Reading is libvirt's: a stream callback on libvirt's event thread (``virt.events``) takes what arrived
(``recv`` of a remote stream only empties the client's buffer, no round trip) and posts it to the IOLoop
with ``call_soon_threadsafe``. Writing is ours: each console has one writer thread, so keystrokes reach
the guest in the order they were typed and the IOLoop never waits on libvirt.

**VNC.** ``vnc_endpoint`` reads the running domain's XML with its secrets (the per-guest password
``domainxml`` sets) and says where to connect: the graphics listen address, or the host's own address
(the libvirt URI's hostname) when QEMU listens on every address. A server that listens only on the
host's loopback can be reached only when the host is this machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import libvirt

from fogmachine.errors import BackendError, Conflict, HostUnreachable, ValidationError
from fogmachine.virt.opening import post

log = logging.getLogger(__name__)

READ_CHUNK = 65536
# How long one write may wait for the stream to take it (a non-blocking stream answers "later", -2).
SEND_PATIENCE_S = 10.0
ENDED_ON_HOST = "the console session ended on the host (another session took it over, or the guest stopped)"
_STREAM_EVENTS = (libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR
                  | libvirt.VIR_STREAM_EVENT_HANGUP)


class SerialConsole:
    """One open session on a domain's serial console.

    ``on_data(bytes)`` and ``on_end(reason)`` run on the IOLoop; ``on_end`` once, when the stream ends
    for any reason but ``close()`` (the guest stopped, another session took over, the host went away).
    """

    def __init__(self, host: str, domain: str, stream: libvirt.virStream, loop: asyncio.AbstractEventLoop,
                 on_data: Callable[[bytes], None], on_end: Callable[[str], None]) -> None:
        self.host = host
        self.domain = domain
        self._stream = stream
        self._loop = loop
        self._on_data = on_data
        self._on_end = on_end
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fm-console-{domain}")
        self._lock = threading.Lock()
        self._ended = False  # set once: by the stream's end, a failed write, or close()
        # Set once the stream is given back to the host (after the end, on the writer thread): until then the
        # host still counts the session, and opening the console again without force is refused as busy.
        self.released = threading.Event()

    @property
    def ended(self) -> bool:
        return self._ended

    # ----------------------------------------------------------- libvirt's event thread

    def _readable(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            while True:
                try:
                    data = stream.recv(READ_CHUNK)
                except libvirt.libvirtError as exc:  # what a take-over elsewhere looks like: "I/O failure"
                    self._end_from_thread(f"{ENDED_ON_HOST}: {exc.get_error_message() or exc}")
                    return
                if isinstance(data, int):  # -2: nothing more for now
                    break
                if not data:
                    self._end_from_thread("the guest's console closed")
                    return
                post(self._loop, self._deliver, data)
        if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
            self._end_from_thread(ENDED_ON_HOST)

    def _end_from_thread(self, reason: str) -> None:
        if self._mark_ended():
            self._finish()
            post(self._loop, self._on_end, reason)

    # ----------------------------------------------------------- the IOLoop

    def _deliver(self, data: bytes) -> None:
        if not self._ended:
            self._on_data(data)

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the guest's serial port; returns at once. A failed write ends the session."""
        if self._ended or not data:
            return
        try:
            self._writer.submit(self._send_all, data)
        except RuntimeError:  # closed meanwhile
            return

    def close(self) -> None:
        """End the session from our side (the socket closed, idle, taken over here); ``on_end`` is not called."""
        if self._mark_ended():
            self._finish()

    # ----------------------------------------------------------- the writer thread

    def _send_all(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + SEND_PATIENCE_S
        while view and not self._ended:
            try:
                sent = self._stream.send(bytes(view))
            except libvirt.libvirtError as exc:
                self._end_from_thread(f"writing to the console failed: {exc.get_error_message() or exc}")
                return
            if sent == -2:
                if time.monotonic() > deadline:
                    self._end_from_thread("the guest's console stopped taking input")
                    return
                time.sleep(0.005)
                continue
            view = view[sent:]

    def _mark_ended(self) -> bool:
        with self._lock:
            if self._ended:
                return False
            self._ended = True
            return True

    def _finish(self) -> None:
        """Release the stream on the writer thread (after the writes queued before), never on the event
        thread: aborting a remote stream is a round trip to the host."""
        try:
            self._writer.submit(self._release)
        except RuntimeError:
            return
        self._writer.shutdown(wait=False)

    def _release(self) -> None:
        try:
            for step in (self._stream.eventRemoveCallback, self._stream.abort):
                try:
                    step()
                except libvirt.libvirtError:
                    pass  # a stream the host already ended: nothing left to release
        finally:
            self.released.set()


def open_serial(conn: libvirt.virConnect, name: str, force: bool, loop: asyncio.AbstractEventLoop,
                on_data: Callable[[bytes], None], on_end: Callable[[str], None], host: str) -> SerialConsole:
    """(call thread) Attach a new stream to domain ``name``'s serial console; libvirt errors pass through."""
    dom = conn.lookupByName(name)
    stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
    try:
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else 0)
        console = SerialConsole(host, name, stream, loop, on_data, on_end)
        stream.eventAddCallback(_STREAM_EVENTS, console._readable, None)
    except libvirt.libvirtError:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
        raise
    return console


# ------------------------------------------------------------------ VNC


@dataclass(frozen=True)
class VncEndpoint:
    """Where a guest's VNC server is, and its password (None: the domain has none). Never logged."""

    address: str
    port: int
    password: str | None

    def __repr__(self) -> str:
        return f"VncEndpoint({self.address}:{self.port}, password={'set' if self.password else 'none'})"


def secure_xml(conn: libvirt.virConnect, name: str) -> str:
    """(call thread) The running domain's XML with its secrets (the VNC password)."""
    return str(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))


def host_address(uri: str) -> str | None:
    """The host's address from its libvirt URI; None when the host is this machine (no hostname)."""
    hostname = urlsplit(uri).hostname
    return hostname or None


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _is_wildcard(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def connect_address(listen: str | None, host: str | None) -> str:
    """Where to reach a VNC server listening on ``listen`` on a host at ``host`` (None: this machine).

    A loopback listen address is reachable only from the host itself: on this machine it is used as it
    is (the test hosts are 127.0.0.1 and 127.0.0.2 of one machine, their QEMUs listen on 127.0.0.1); for
    a remote host that is a deployment choice Fogmachine cannot work around, said as such.
    """
    if not listen or _is_wildcard(listen):
        return host or "127.0.0.1"
    if _is_loopback(listen):
        if host is None or _is_loopback(host):
            return listen
        raise BackendError(f"the guest's VNC server listens only on {host}'s loopback ({listen}); "
                           "set vnc_listen to an address Fogmachine can reach")
    return listen


def vnc_endpoint(xml: str, uri: str) -> VncEndpoint:
    """The VNC endpoint of a running domain's live XML (``secure_xml``) on the host at ``uri``."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValidationError(f"domain XML is not well-formed: {exc}") from None
    graphics = next((g for g in root.findall("./devices/graphics") if g.get("type") == "vnc"), None)
    if graphics is None:
        raise Conflict("the guest has no graphical console (no VNC device)")
    try:
        port = int(graphics.get("port", "-1"))
    except ValueError:
        port = -1
    if port <= 0:
        raise Conflict("the guest's graphical console is not running (start the guest first)")
    listen = graphics.get("listen")
    listen_el = graphics.find("listen")
    if listen_el is not None and listen_el.get("type") == "address" and listen_el.get("address"):
        listen = listen_el.get("address")
    return VncEndpoint(connect_address(listen, host_address(uri)), port, graphics.get("passwd") or None)


async def connect_vnc(endpoint: VncEndpoint, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the guest's VNC server, for the relay; HostUnreachable when there is none."""
    try:
        async with asyncio.timeout(timeout):  # not wait_for: see tests/test_architecture.py
            return await asyncio.open_connection(endpoint.address, endpoint.port)
    except (OSError, TimeoutError) as exc:
        raise HostUnreachable(f"the guest's VNC server at {endpoint.address}:{endpoint.port} cannot be reached: "
                              f"{exc or type(exc).__name__}") from None
