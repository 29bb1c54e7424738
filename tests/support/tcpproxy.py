"""A TCP forwarder in front of a shared service, so a test can make that service vanish for itself alone.

Stopping the shared Cobbler or a shared libvirtd pulls it from under every other test
running at the time. A test that points Fogmachine at a ``TcpProxy`` instead, and then
calls ``cut()``, gets the same real fault a dead service gives (open connections reset,
new ones refused) while the service keeps running for everyone else; ``restore()``
brings it back on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target``; ``cut()`` closes the port and every connection."""

    def __init__(self, target: tuple[str, int], listen_host: str = "127.0.0.1", record: bool = False) -> None:
        self.target = target
        self.listen_host = listen_host
        # With record=True, every byte passed either way, in order: what a test needs to know of the
        # conversation (e.g. the session token a server handed out) without asking the client's internals.
        self.record = record
        self.transcript: list[bytes] = []
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self.port)

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True, name="tcpproxy")
        self._thread.start()
        return self

    def cut(self) -> None:
        """The service is gone: refuse new connections and reset the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
        if self._thread is not None:
            self._thread.join(5)

    def restore(self) -> None:
        """The service is back, on the same port."""
        if self._listener is None:
            self.start()

    def __enter__(self) -> TcpProxy:
        return self.start() if self._listener is None else self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
            done = threading.Barrier(2, action=lambda c=client, u=upstream: self._close_pair(c, u))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, done), daemon=True, name="tcpproxy-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
        try:
            to_target = dst.getpeername()[:2] == self.target
        except OSError:
            to_target = False
        try:
            while chunk := src.recv(65536):
                if self.record:
                    with self._lock:
                        self.transcript.append(chunk)
                self._forward(src, dst, chunk, to_target)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait(timeout=3600)

    def _forward(self, src: socket.socket, dst: socket.socket, chunk: bytes, to_target: bool) -> None:
        """Pass one chunk on (``to_target``: towards the service); a subclass may hold it first."""
        dst.sendall(chunk)

    def _close_pair(self, *pair: socket.socket) -> None:
        """Both directions ended: the pair is closed (unless cut() already reset it)."""
        with self._lock:
            mine = [s for s in pair if s in self._conns]
            self._conns.difference_update(pair)
        for sock in mine:
            with contextlib.suppress(OSError):
                sock.close()
