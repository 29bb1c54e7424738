"""A site on test-driver hosts for the console routes, and a WebSocket client that logs in first.

The test driver has no consoles (``openConsole`` is unsupported, a VNC port is never assigned), so these
tests check everything around the console: who is refused and how, and that a refusal leaves nothing
claimed. The consoles themselves are tested on the real hosts (tests/virt/test_console.py,
tests/web/console/test_realhosts.py, tests/browser/test_console.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from sqlalchemy import select

from fogmachine.db.models import UserSession
from fogmachine.services.actor import Actor
from tests.web.pages.conftest import PageClient, Site, with_users, write_catalog


@pytest.fixture
async def console_site(make_config, start_server, tmp_path) -> Site:
    return await make_console_site(make_config, start_server, tmp_path)


async def make_console_site(make_config, start_server, tmp_path) -> Site:
    """A server on one test-driver host with users alice, bob and root (admin)."""
    config = make_config(hosts={"h1": {"cpus": 8, "memory_mb": 16384}}, local_catalog=write_catalog(tmp_path))
    return await with_users(await start_server(config))


def cookie_header(client: PageClient) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}


async def open_socket(base_url: str, path: str, client: PageClient | None = None, *, origin: str | None = None,
                      subprotocols: list[str] | None = None) -> tornado.websocket.WebSocketClientConnection:
    headers = cookie_header(client) if client is not None else {}
    if origin is not None:
        headers["Origin"] = origin
    url = base_url.replace("http://", "ws://").replace("https://", "wss://") + path
    request = tornado.httpclient.HTTPRequest(url, headers=headers, validate_cert=False)
    return await tornado.websocket.websocket_connect(request, subprotocols=subprotocols)


async def refused_status(base_url: str, path: str, client: PageClient | None = None, **kwargs: Any) -> int:
    """The HTTP status that refused the handshake (fails when the socket opened)."""
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await open_socket(base_url, path, client, **kwargs)
    return info.value.code


async def close_of(ws: tornado.websocket.WebSocketClientConnection, timeout: float = 15) -> tuple[int | None, str]:
    """Read until the server closes the socket; its close code and reason."""
    async def drain() -> None:
        while await ws.read_message() is not None:
            pass

    await asyncio.wait_for(drain(), timeout)
    return ws.close_code, ws.close_reason or ""


async def session_actor(site: Site, client: PageClient, username: str) -> Actor:
    """The Actor a request with ``client``'s cookie is (its login session's id included)."""
    uid = site.users[username]
    session_id = await site.ctx.db.run(
        lambda s: s.scalar(select(UserSession.id).where(UserSession.user_id == uid).order_by(UserSession.id.desc())))
    return Actor(user_id=uid, username=username, is_admin=username == "root", session_id=session_id)
