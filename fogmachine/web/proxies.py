"""Which client address and protocol a request has: ``X-Forwarded-*`` only from ``trusted_proxies``.

Tornado's ``xheaders=True`` believes ``X-Forwarded-For``, ``X-Real-Ip`` and
``X-Forwarded-Proto`` from anyone. Then a client chooses the address the
per-address login limit counts and the audit log records, and whether the
cookies it gets are Secure. Here the headers count only when the peer of the
TCP connection is one of the operator's reverse proxies, and the client is the
right-most address in ``X-Forwarded-For`` that is not a trusted proxy: every
proxy appends the address it saw, so everything left of that is what the
client itself claimed.

``ForwardedHeaders`` wraps the application for the HTTP server and rewrites
the connection's address and protocol before Tornado builds the request, so
``request.remote_ip`` and ``request.protocol`` are the truth everywhere else,
then puts the peer's own values back for the next request on that connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Iterable

from tornado import httputil

from fogmachine.config import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
PROTOCOLS = frozenset({"http", "https"})
# More hops than any real chain of proxies: a longer header is read only this far from the right.
MAX_HOPS = 32


def parse_address(text: str) -> Address | None:
    """An address as a proxy writes it (``1.2.3.4``, ``::1``, ``[::1]``), or None for anything else."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; they are the IPv4 address.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The operator's reverse proxies, and what their headers say about a request."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str, headers: httputil.HTTPHeaders) -> tuple[str, str | None]:
        """(client address, protocol or None) for a request that came from ``peer``."""
        peer_address = parse_address(peer)
        if not self.trusts(peer_address):
            return peer, None
        hops = [hop for value in headers.get_list("X-Forwarded-For") for hop in value.split(",")]
        if not hops:
            hops = headers.get_list("X-Real-Ip")[-1:]
        client = str(peer_address)
        for hop in reversed(hops[-MAX_HOPS:]):
            address = parse_address(hop)
            if address is None:
                break  # junk left of here came from the client: the last good hop is the best we know
            client = str(address)
            if not self.trusts(address):
                break
        proto_values = headers.get_list("X-Forwarded-Proto") or headers.get_list("X-Scheme")
        proto = proto_values[-1].split(",")[-1].strip().lower() if proto_values else ""
        return client, proto if proto in PROTOCOLS else None


class ForwardedHeaders(httputil.HTTPServerConnectionDelegate):
    """Wraps the application for the HTTPServer (which runs with ``xheaders=False``)."""

    def __init__(self, app: httputil.HTTPServerConnectionDelegate, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        inner = self.app.start_request(server_conn, request_conn)
        if not self.proxies.networks:
            return inner
        return _Request(inner, request_conn, self.proxies)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Request(httputil.HTTPMessageDelegate):
    def __init__(self, inner: httputil.HTTPMessageDelegate, connection: httputil.HTTPConnection,
                 proxies: TrustedProxies) -> None:
        self.inner = inner
        self.context = getattr(connection, "context", None)
        self.proxies = proxies
        self.saved: tuple[str, str] | None = None

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        context = self.context
        if context is not None and getattr(context, "remote_ip", None):
            self.saved = (context.remote_ip, context.protocol)
            client, proto = self.proxies.client(context.remote_ip, headers)
            context.remote_ip = client
            if proto is not None:
                context.protocol = proto
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self._restore()
        self.inner.finish()

    def on_connection_close(self) -> None:
        self._restore()
        self.inner.on_connection_close()

    def _restore(self) -> None:
        # The request already holds its values; the next one on this connection starts from the peer's.
        if self.saved is not None and self.context is not None:
            self.context.remote_ip, self.context.protocol = self.saved
            self.saved = None
