"""What the live-update tests share: a site with users, a second OS process that writes, and socket reads.

Changes are made by a separate OS process that shares the database (as a second
Fogmachine process or the CLI would), so a test proves the page hears about
changes this server never made itself.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from fogmachine.web.live import Subscriber
from tests.support import provisioning as pv
from tests.web.pages.conftest import PageClient, Site, with_users, write_catalog

OTHER_PROCESS = """
import sys
from sqlalchemy import delete, update
from fogmachine.db.models import Guest, Host, utcnow
from fogmachine.db.session import Database

url, table, key, column, value = sys.argv[1:6]
db = Database(url, threads=1)
with db.session() as s:
    if table == "guest" and column == "DELETE":
        s.execute(delete(Guest).where(Guest.id == int(key)))
    elif table == "guest":
        s.execute(update(Guest).where(Guest.id == int(key)).values({column: value, "updated_at": utcnow()}))
    else:
        s.execute(update(Host).where(Host.name == key).values({column: value, "updated_at": utcnow()}))
db.dispose()
"""


async def other_process(url: str, table: str, key: Any, column: str, value: str = "") -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", OTHER_PROCESS, url, table, str(key), column,
                                                value, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


@pytest.fixture
async def live_site(make_config, start_server, tmp_path, database_url) -> Site:
    config = make_config(hosts={"h1": {"cpus": 8, "memory_mb": 16384}, "h2": {"cpus": 4, "memory_mb": 8192}},
                         local_catalog=write_catalog(tmp_path), database_connection=database_url)
    return await with_users(await start_server(config))


async def connect(site: Site, username: str | None, origin: str | None = None, guest: int | str | None = None):
    """A page's socket as ``username`` (None: nobody logged in); ``guest``: the socket of that guest's page."""
    headers = {}
    if username is not None:
        client = await site.as_user(username)
        headers["Cookie"] = f"fm_session={client.cookies['fm_session']}"
    if origin is not None:
        headers["Origin"] = origin
    url = site.srv.base_url.replace("http://", "ws://") + "/live" + ("" if guest is None else f"?guest={guest}")
    return await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(url, headers=headers))


async def connect_as(site: Site, client: PageClient):
    """The socket of a page that ``client`` (logged in) has open."""
    url = site.srv.base_url.replace("http://", "ws://") + "/live"
    headers = {"Cookie": f"fm_session={client.cookies['fm_session']}"}
    return await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(url, headers=headers))


async def next_message(ws, check=lambda m: True, timeout: float = 15.0) -> dict[str, Any]:
    """The first message that passes ``check`` (earlier ones are skipped)."""
    async def read() -> dict[str, Any]:
        while True:
            raw = await ws.read_message()
            assert raw is not None, "the server closed the socket"
            message = json.loads(raw)
            if check(message):
                return message

    return await asyncio.wait_for(read(), timeout)


def is_page(gid: int, **fields: Any):
    """A check for ``next_message``: the page of guest ``gid``, with these values."""
    def check(message: dict[str, Any]) -> bool:
        page = message.get("guest") if message["type"] == "page" else None
        return page is not None and page["id"] == gid and all(page.get(k) == v for k, v in fields.items())
    return check


async def quiet(site: Site) -> None:
    """Wait until nothing more is written to the guests on its own: provisioning's follow-ups are done and each
    host was read once more (a domain's start is recorded by its event and a resync that may come after READY;
    a write then would be a second, genuine, update and the counts in the tests would be off by one)."""
    await pv.settle(site.ctx)
    for conn in site.ctx.hosts.all():
        await conn.resync()


def has_guest(gid: int, **fields: Any):
    def check(message: dict[str, Any]) -> bool:
        return any(g["id"] == gid and all(g.get(k) == v for k, v in fields.items()) for g in message["guests"])
    return check


async def next_text(ws, check) -> str:
    """The text of the first message that passes ``check``, as the socket received it."""
    async def read() -> str:
        while True:
            raw = await ws.read_message()
            assert raw is not None, "the server closed the socket"
            if check(json.loads(raw)):
                return raw

    return await asyncio.wait_for(read(), 15.0)


class Recorder(Subscriber):
    """A subscriber that keeps what the feed sent it, for tests that poll the feed by hand."""

    def __init__(self, user_id: int, is_admin: bool = False, guest_page: int | None = None) -> None:
        super().__init__(user_id, is_admin, guest_page=guest_page)
        self.messages: list[dict[str, Any]] = []

    def send(self, text: str) -> None:
        self.messages.append(json.loads(text))


