"""The ``/live`` socket, end to end on SQLite, MariaDB and PostgreSQL: who may open one, and what each page hears."""

from __future__ import annotations

import pytest
import tornado.httpclient

from fogmachine.db.models import Guest, User
from fogmachine.web.live import LiveFeed
from tests.web.live.conftest import connect, has_guest, next_message, other_process
from tests.web.pages.conftest import PageClient


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
    feed: LiveFeed = site.srv.parts.live

    def change(s):
        s.get(User, site.users["bob"]).is_admin = True
        s.get(User, site.users["alice"]).is_active = False

    await site.ctx.db.run(change)
    await feed.poll_once(full=True)  # the periodic full scan re-checks users
    assert await alice.read_message() is None  # closed by the server
    await site.ctx.db.run(lambda s: setattr(s.get(Guest, web1), "ip", "10.1.2.3"))
    await next_message(bob, has_guest(web1, ip="10.1.2.3"))
    bob.close()


async def test_page_client_is_unaffected_by_live(live_site):
    """The socket endpoint is a GET route like any page; a plain GET is refused cleanly."""
    c: PageClient = await live_site.as_user("alice")
    r = await c.get("/live")
    assert r.code == 400
