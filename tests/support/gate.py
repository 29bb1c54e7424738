"""A gate for a tiny guest's install: an HTTP URL that answers 503 until the test opens it.

The guests of ``cobbler.GATED_PROFILE`` run its kickstart's %post, which waits (before it phones home) until the
URL in their tier's variable ``gate`` answers 200. A fault test then knows its guest is installing, domain running
and phone-home not yet sent, for as long as it needs: it kills a host or cuts Cobbler there, then opens the gate,
instead of racing a guest that phones home a few seconds after it boots.

Served from a thread, so sync and async tests alike can use it; guests reach it at 10.0.2.2 (QEMU's user network
maps that to this machine's loopback).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Gate:
    def __init__(self) -> None:
        self.arrived = threading.Event()  # a guest asked at least once: it is waiting at the gate
        self.opened = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Gate:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.arrived.set()
                self.send_response(200 if gate.opened.is_set() else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a guest asks every second: not worth a line each

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="gate").start()
        return self

    @property
    def url(self) -> str:
        """The URL as the guest sees it."""
        assert self._server is not None
        return f"http://10.0.2.2:{self._server.server_address[1]}/gate"

    def open(self) -> None:
        self.opened.set()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
