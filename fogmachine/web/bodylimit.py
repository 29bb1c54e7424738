"""Requests whose declared body is over the server's limit get a real 413, not Tornado's bare 400.

Tornado refuses a Content-Length above ``max_body_size`` itself: it writes
``HTTP/1.1 400 Bad Request`` with no headers and no body and closes the
connection, before any handler runs. A script then reads "400" with nothing
to say why. The check here runs when the headers have arrived (nothing of the
body has been read): it answers 413 in Fogmachine's error shape (JSON under
``/api/`` and ``/guest/``, a line of text elsewhere), names the limit, and
closes the connection, since the unread body is still on its way.

A chunked body (no Content-Length) that grows past the limit is still cut off
by Tornado with its 400; nothing knows its size before it is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable

from tornado import httputil, iostream

from fogmachine.web.base import error_body

log = logging.getLogger(__name__)
# How long the rest of a refused body is read and dropped before the connection is closed.
LINGER_SECONDS = 2.0


class BodyLimit(httputil.HTTPServerConnectionDelegate):
    """Wraps the Application for the HTTPServer; only oversized requests are answered here."""

    def __init__(self, app: httputil.HTTPServerConnectionDelegate, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _Request(self.app.start_request(server_conn, request_conn), request_conn, self.max_bytes)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Request(httputil.HTTPMessageDelegate):
    def __init__(self, inner: httputil.HTTPMessageDelegate, connection: httputil.HTTPConnection,
                 max_bytes: int) -> None:
        self.inner = inner
        self.connection = connection
        self.max_bytes = max_bytes

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        declared = headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            assert isinstance(start_line, httputil.RequestStartLine)
            self._refuse(start_line, int(declared))
            return None
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()

    def _refuse(self, start_line: httputil.RequestStartLine, declared: int) -> None:
        message = f"the request body is {declared} bytes; the most this server takes is {self.max_bytes}"
        path = start_line.path.split("?", 1)[0]
        if path.startswith(("/api/", "/guest/")):
            content_type = "application/json; charset=UTF-8"
            body = json.dumps(error_body("too_large", message, {"max_bytes": self.max_bytes})).encode()
        else:
            content_type = "text/plain; charset=UTF-8"
            body = f"413 Payload Too Large: {message}\n".encode()
        log.warning("%s %s: %s", start_line.method, path, message)
        # Detached, the connection is ours: Tornado reads no body from it and writes nothing more.
        stream = self.connection.detach()  # type: ignore[attr-defined]
        head = (f"HTTP/1.1 413 Payload Too Large\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        task = asyncio.ensure_future(_answer_and_linger(stream, head + body))
        _answering.add(task)
        task.add_done_callback(_answering.discard)


_answering: set[asyncio.Future[None]] = set()


async def _answer_and_linger(stream: iostream.IOStream, response: bytes) -> None:
    """Write the answer, then read and drop what the client still sends for a moment before closing.

    Closing a socket with unread data in it makes the kernel reset the connection, and a client still
    sending its body may then lose the answer before reading it (the "lingering close" of web servers).
    A client that sent ``Expect: 100-continue`` (curl does for big bodies) gets the answer before
    sending anything.
    """
    loop = asyncio.get_running_loop()
    try:
        await stream.write(response)
        stream.socket.shutdown(socket.SHUT_WR)
        deadline = loop.time() + LINGER_SECONDS
        while (left := deadline - loop.time()) > 0:
            async with asyncio.timeout(left):
                await stream.read_bytes(65536, partial=True)
    except (iostream.StreamClosedError, OSError, TimeoutError):
        pass
    finally:
        stream.close()
