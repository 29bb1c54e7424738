"""Live updates over WebSocket, driven by the database, on SQLite, MariaDB and PostgreSQL.

Changes are made by a separate OS process that shares the database (as a second
Fogmachine process or the CLI would), so the test proves the page hears about
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
from sqlalchemy import select

from fogmachine.db.models import Guest, User
from fogmachine.web import live
from fogmachine.web.base import to_json
from fogmachine.web.live import LiveFeed, Subscriber
from tests.web.pages.conftest import PageClient, Site, password_hash, write_catalog

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
    from fogmachine.services.users import create_user

    config = make_config(hosts={"h1": {"cpus": 8, "memory_mb": 16384}, "h2": {"cpus": 4, "memory_mb": 8192}},
                         local_catalog=write_catalog(tmp_path), database_connection=database_url)
    srv = await start_server(config)
    users = {}
    for name in ("alice", "bob", "root"):
        user = await srv.ctx.db.run(create_user, name, "x", is_admin=name == "root", password_hash=password_hash())
        users[name] = user.id
    return Site(srv, users)


async def connect(site: Site, username: str | None, origin: str | None = None):
    headers = {}
    if username is not None:
        client = await site.as_user(username)
        headers["Cookie"] = f"fm_session={client.cookies['fm_session']}"
    if origin is not None:
        headers["Origin"] = origin
    url = site.srv.base_url.replace("http://", "ws://") + "/live"
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


def has_guest(gid: int, **fields: Any):
    def check(message: dict[str, Any]) -> bool:
        return any(g["id"] == gid and all(g.get(k) == v for k, v in fields.items()) for g in message["guests"])
    return check


async def test_guest_changes_from_another_process_reach_the_right_pages(live_site, database_url):
    site = live_site
    web1 = await site.guest("alice", "web1")
    bob1 = await site.guest("bob", "bob1")
    alice, bob, root = (await connect(site, "alice"), await connect(site, "bob"), await connect(site, "root"))
    snap = await next_message(alice)
    assert snap["type"] == "snapshot" and [g["id"] for g in snap["guests"]] == [web1]
    assert {h["name"] for h in snap["hosts"]} == {"h1", "h2"}
    assert "pause" in snap["guests"][0]["actions"] and "phonehome_token_hash" not in snap["guests"][0]
    assert [g["id"] for g in (await next_message(bob))["guests"]] == [bob1]
    assert {g["id"] for g in (await next_message(root))["guests"]} == {web1, bob1}

    await other_process(database_url, "guest", web1, "state", "paused")
    update = await next_message(alice, has_guest(web1, state="paused"))
    assert update["type"] == "update"
    guest = next(g for g in update["guests"] if g["id"] == web1)
    assert "unpause" in guest["actions"] and "pause" not in guest["actions"] and guest["owner"] == "alice"
    await next_message(root, has_guest(web1, state="paused"))
    # bob hears of his own guest's change, and never of alice's
    await other_process(database_url, "guest", bob1, "step", "failed")
    seen = await next_message(bob, has_guest(bob1, step="failed"))
    assert all(g["id"] == bob1 for g in seen["guests"])
    assert all(g["owner"] == "bob" for g in seen["guests"])

    await other_process(database_url, "guest", web1, "DELETE")
    gone = await next_message(alice, lambda m: web1 in m["gone"])
    assert gone["type"] == "update"
    await next_message(root, lambda m: web1 in m["gone"])
    for ws in (alice, bob, root):
        ws.close()


async def test_host_state_reaches_everyone(live_site, database_url):
    site = live_site
    alice = await connect(site, "alice")
    await next_message(alice, lambda m: m["type"] == "snapshot")
    await other_process(database_url, "host", "h2", "state_reason", "cable cut")
    message = await next_message(alice, lambda m: any(h["name"] == "h2" for h in m["hosts"]))
    h2 = next(h for h in message["hosts"] if h["name"] == "h2")
    assert h2["state_reason"] == "cable cut" and h2["display_state"] == "up"
    alice.close()


async def test_sockets_need_a_session_and_the_same_origin(live_site):
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await connect(live_site, None)
    assert info.value.code == 401
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await connect(live_site, "alice", origin="http://evil.example.org")
    assert info.value.code == 403


async def test_disabled_user_is_dropped_and_promoted_user_sees_all(live_site):
    site = live_site
    web1 = await site.guest("alice", "web1")
    bob = await connect(site, "bob")
    alice = await connect(site, "alice")
    assert (await next_message(bob))["guests"] == []
    await next_message(alice)
    feed: LiveFeed = site.ctx.extras["live"]

    def change(s):
        s.get(User, site.users["bob"]).is_admin = True
        s.get(User, site.users["alice"]).is_active = False

    await site.ctx.db.run(change)
    await feed.poll_once(full=True)  # the periodic full scan re-checks users
    assert await alice.read_message() is None  # closed by the server
    await site.ctx.db.run(lambda s: setattr(s.get(Guest, web1), "ip", "10.1.2.3"))
    await next_message(bob, has_guest(web1, ip="10.1.2.3"))
    bob.close()


async def next_text(ws, check) -> str:
    """The text of the first message that passes ``check``, as the socket received it."""
    async def read() -> str:
        while True:
            raw = await ws.read_message()
            assert raw is not None, "the server closed the socket"
            if check(json.loads(raw)):
                return raw

    return await asyncio.wait_for(read(), 15.0)


async def test_a_message_is_encoded_once_for_every_page_it_goes_to(live_site, database_url, monkeypatch):
    """Pages that may see the same news get one JSON text, made once per poll, not once per socket."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    await site.guest("bob", "bob1")
    encoded: list[str] = []

    def counting(payload: Any) -> str:
        text = to_json(payload)
        encoded.append(text)
        return text

    monkeypatch.setattr(live, "to_json", counting)
    # two tabs of alice's, bob, and an administrator
    pages = [await connect(site, name) for name in ("alice", "alice", "bob", "root")]
    for ws in pages:
        await next_message(ws, lambda m: m["type"] == "snapshot")

    # a host: every page hears it, in one text encoded once (four encodings before)
    await other_process(database_url, "host", "h2", "state_reason", "cable cut")
    texts = [await next_text(ws, lambda m: any(h["state_reason"] == "cable cut" for h in m["hosts"]))
             for ws in pages]
    assert len(set(texts)) == 1 and encoded.count(texts[0]) == 1

    # alice's guest: her two tabs and the administrator get the same text, encoded once
    await other_process(database_url, "guest", web1, "state", "paused")
    alice1, alice2, _, root = pages
    texts = [await next_text(ws, has_guest(web1, state="paused")) for ws in (alice1, alice2, root)]
    assert len(set(texts)) == 1 and encoded.count(texts[0]) == 1
    for ws in pages:
        ws.close()


class Recorder(Subscriber):
    def __init__(self, user_id: int, is_admin: bool = False) -> None:
        super().__init__(user_id, is_admin)
        self.messages: list[dict[str, Any]] = []

    def send(self, text: str) -> None:
        self.messages.append(json.loads(text))


async def test_overlapping_windows_send_each_change_once(live_site):
    """A row read again in the overlap is diffed by content: no duplicate messages."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    feed = LiveFeed(site.ctx, interval_s=3600, overlap_s=30)  # polled by hand below
    await feed.poll_once(full=True)
    rec = Recorder(site.users["alice"])
    feed.subscribe(rec)
    await feed.poll_once()
    assert [m["type"] for m in rec.messages] == ["snapshot"]
    await site.ctx.db.run(lambda s: setattr(s.get(Guest, web1), "hostname", "web1.example.org"))
    for _ in range(3):
        await feed.poll_once()
    updates = [m for m in rec.messages if m["type"] == "update"]
    assert len(updates) == 1 and updates[0]["guests"][0]["hostname"] == "web1.example.org"
    # a change the window missed (stamped long ago) is caught by the full scan
    import datetime as dt

    def old_change(s):
        g = s.get(Guest, web1)
        g.ip = "10.9.9.9"
        s.flush()
        s.execute(Guest.__table__.update().where(Guest.id == web1).values(
            updated_at=dt.datetime(2000, 1, 1)))

    await site.ctx.db.run(old_change)
    await feed.poll_once()
    assert len([m for m in rec.messages if m["type"] == "update"]) == 1
    await feed.poll_once(full=True)
    assert rec.messages[-1]["guests"][0]["ip"] == "10.9.9.9"
    await feed.stop()


async def test_snapshot_waits_for_a_poll_that_started_after_subscribing(live_site):
    site = live_site
    feed = LiveFeed(site.ctx, interval_s=3600)
    await feed.poll_once(full=True)
    rec = Recorder(site.users["alice"])
    feed.subscribe(rec)
    assert rec.messages == []  # the cache may be older than the page the browser just rendered
    web1 = await site.guest("alice", "web1")
    await feed.poll_once()
    assert rec.messages[0]["type"] == "snapshot" and [g["id"] for g in rec.messages[0]["guests"]] == [web1]
    found = await site.ctx.db.run(lambda s: s.scalar(select(Guest.name).where(Guest.id == web1)))
    assert found == "web1"
    await feed.stop()


async def test_page_client_is_unaffected_by_live(live_site):
    """The socket endpoint is a GET route like any page; a plain GET is refused cleanly."""
    c: PageClient = await live_site.as_user("alice")
    r = await c.get("/live")
    assert r.code == 400


async def test_a_guest_that_stops_being_mine_is_gone_for_me(live_site):
    """SQLite reuses a deleted last row's id: the same id may come back as someone else's guest
    (or as an unmanaged domain). The page that showed the old one must drop it, not keep it."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    feed = LiveFeed(site.ctx, interval_s=3600)
    await feed.poll_once(full=True)
    alice, bob = Recorder(site.users["alice"]), Recorder(site.users["bob"])
    feed.subscribe(alice)
    feed.subscribe(bob)
    await feed.poll_once()

    def give_away(s):
        g = s.get(Guest, web1)
        g.owner_id = None
        g.managed = False

    await site.ctx.db.run(give_away)
    await feed.poll_once()
    assert alice.messages[-1]["gone"] == [web1] and alice.messages[-1]["guests"] == []
    assert all(m["guests"] == [] and m["gone"] == [] for m in bob.messages)
    await feed.stop()
