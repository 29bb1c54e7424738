"""A TCP forwarder that hangs the reply to one request, so a test can stop a caller mid-call.

A hung service is a real fault: the request reached the service and did its work, and
the answer never comes back. ``StallingProxy`` forwards like ``TcpProxy`` until a request
carries ``pattern`` (for Cobbler's XML-RPC, ``b"<methodName>save_system</methodName>"``);
that request goes through, and its reply is held until ``release()``. ``stalled`` is set
when the reply is being held: the service has done the work and the caller is waiting.
Only the first such request is held.
"""

from __future__ import annotations

import socket
import threading

from tests.support.tcpproxy import TcpProxy


class StallingProxy(TcpProxy):
    def __init__(self, target: tuple[str, int], pattern: bytes, listen_host: str = "127.0.0.1") -> None:
        super().__init__(target, listen_host)
        self.pattern = pattern
        self.stalled = threading.Event()
        self._released = threading.Event()
        self._held: set[socket.socket] = set()  # upstream sockets whose replies are held
        self._matched = False

    def release(self) -> None:
        """Let the held reply (and everything after it) through."""
        self._released.set()

    def cut(self) -> None:
        self.release()
        super().cut()

    def _forward(self, src: socket.socket, dst: socket.socket, chunk: bytes, to_target: bool) -> None:
        if to_target and not self._matched and self.pattern in chunk:
            self._matched = True
            self._held.add(dst)  # before the request leaves: its reply cannot overtake the mark
        elif not to_target and src in self._held and not self._released.is_set():
            self.stalled.set()
            self._released.wait()
        dst.sendall(chunk)
