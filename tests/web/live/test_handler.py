"""The ``/live`` socket, end to end on SQLite, MariaDB and PostgreSQL: who may open one, and what each page hears."""

from __future__ import annotations

import asyncio
import json

import pytest
import tornado.httpclient

from fogmachine.db.models import Guest, User
from fogmachine.services import guestview, lifecycle, reservations
from fogmachine.web.live import LiveFeed
from fogmachine.web.live.feed import GOING_AWAY, SESSION_ENDED
from tests.web.live.conftest import connect, connect_as, has_guest, is_page, next_message, other_process, quiet
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


async def _until_host_reason(ws, reason: str) -> list[str]:
    """The text of every message ``ws`` gets up to and with the one that carries a host whose reason is ``reason``.

    A host change reaches every page in the order of the polls, so a page that hears it has heard by then
    everything the polls before it sent: what it did not get by then, it was never sent."""
    texts = []

    async def read() -> None:
        while True:
            raw = await ws.read_message()
            assert raw is not None, "the server closed the socket"
            texts.append(raw)
            if any(h["state_reason"] == reason for h in json.loads(raw).get("hosts", [])):
                return

    await asyncio.wait_for(read(), 15.0)
    return texts


async def test_a_guest_page_follows_its_guest_and_another_user_hears_nothing_of_it(live_site, database_url):
    """/live?guest=ID: the page's parts after the snapshot, then at each change of the guest, whoever wrote
    it (another process, this one, the delete of the page's own button); bob, who opens the socket of
    alice's guest's page all the same, gets his snapshot and nothing about her guest, ever."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    await quiet(site)
    alice, root = await connect(site, "alice", guest=web1), await connect(site, "root", guest=web1)
    bob = await connect(site, "bob", guest=web1)
    snap = await next_message(alice)
    assert snap["type"] == "snapshot" and [g["id"] for g in snap["guests"]] == [web1]
    page = (await next_message(alice))["guest"]  # right after the snapshot
    rendered = await site.ctx.db.run(guestview.guest_page, site.actor("alice"), web1)
    assert page["id"] == web1 and page["sentence"] == rendered["sentence"] == "Ready and running"
    assert [s["step"] for s in page["steps"]] == [s.step for s in rendered["steps"]] == ["defining", "booting",
                                                                                         "ready"]
    assert page["steps"][0]["at_text"].endswith(" UTC") and page["steps"][-1]["took_text"] == "—"
    assert page["reason"] == page["ssh"] == "" and "pause" in page["actions"] and not page["retired"]
    assert "phonehome_token_hash" not in page
    await next_message(root, is_page(web1, sentence="Ready and running"))

    # another process pauses it, then it phones home its address
    await other_process(database_url, "guest", web1, "state", "paused")
    page = (await next_message(alice, is_page(web1, state="paused")))["guest"]
    assert page["sentence"] == "Ready, paused: unpause it to go on"
    assert "unpause" in page["actions"] and "pause" not in page["actions"]
    await other_process(database_url, "guest", web1, "ip", "192.0.2.9")
    assert (await next_message(alice, is_page(web1, ip="192.0.2.9")))["guest"]["ssh"] == "ssh alice@192.0.2.9"

    # this process writes a reason, and extends the lease
    await site.ctx.db.run(lambda s: setattr(s.get(Guest, web1), "step_reason", "the disk boot is not switched"))
    page = (await next_message(alice, is_page(web1, reason="the disk boot is not switched")))["guest"]
    assert page["sentence"] == "Ready, paused: unpause it to go on"  # the reason stands beside it
    await site.ctx.db.run(reservations.extend, site.ctx.config, site.actor("alice"), web1, 2)
    extended = (await next_message(alice, lambda m: is_page(web1)(m) and m["guest"]["expires_at"] !=
                                   page["expires_at"]))["guest"]
    assert extended["expires_text"] != page["expires_text"]

    # deleted, as the page's Delete button does it: retired, with the step it ended in
    await lifecycle.delete(site.ctx, site.actor("alice"), web1)
    page = (await next_message(alice, is_page(web1, step="retired")))["guest"]
    assert page["sentence"] == "Retired: deleted by alice" and page["retired"] and page["actions"] == []
    assert page["steps"][-1]["step"] == "retired" and page["steps"][-1]["reason"] == "deleted by alice"
    assert page["retired_text"].endswith(" UTC")
    await next_message(root, is_page(web1, step="retired"))

    # bob: his snapshot, and up to a host change after all of it, nothing of web1
    await other_process(database_url, "host", "h2", "state_reason", "cable cut")
    heard = await _until_host_reason(bob, "cable cut")
    snapshot = json.loads(heard[0])
    assert snapshot["type"] == "snapshot" and snapshot["guests"] == []
    assert all(json.loads(text)["type"] != "page" and "web1" not in text and "alice" not in text
               for text in heard), heard
    for ws in (alice, bob, root):
        ws.close()


async def test_a_guest_deleted_outright_is_gone_from_its_page(live_site, database_url):
    """A row deleted (not retired): the page hears it in ``gone``; a page opened after gets its snapshot and
    no page, as for a guest that never was."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    alice = await connect(site, "alice", guest=web1)
    await next_message(alice, is_page(web1))
    await other_process(database_url, "guest", web1, "DELETE")
    # Another process's DELETE leaves no stamp to poll for: the feed's full read (every 10 s) finds it gone.
    # The wait bounds only a broken build; a loaded machine may take most of two full reads.
    await next_message(alice, lambda m: web1 in m.get("gone", []), timeout=45)
    again = await connect(site, "alice", guest=web1)
    await other_process(database_url, "host", "h2", "state_reason", "after the delete")
    heard = [json.loads(text) for text in await _until_host_reason(again, "after the delete")]
    assert heard[0]["type"] == "snapshot" and all(m["type"] != "page" for m in heard), heard
    for ws in (alice, again):
        ws.close()


async def test_a_guest_page_socket_needs_a_guests_id(live_site):
    """Anything that cannot be a guest's id is refused before the upgrade, as a 400 (not a database error)."""
    for bad in ("web1", "0", "-3", "1.5", "", "2147483648", "9" * 5000, "%C2%B2"):
        with pytest.raises(tornado.httpclient.HTTPClientError) as info:
            await connect(live_site, "alice", guest=bad)
        assert info.value.code == 400, bad
    ws = await connect(live_site, "alice", guest=2147483647)  # the largest id there can be: simply not there
    assert (await next_message(ws))["type"] == "snapshot"
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


async def _close_code(ws, deadline: float = 60.0) -> int | None:
    """Read until the server closes the socket; its close code. (The deadline only stops a broken build.)"""
    async def drain() -> None:
        while await ws.read_message() is not None:
            pass

    await asyncio.wait_for(drain(), deadline)
    return ws.close_code


async def test_logging_out_closes_that_pages_socket_as_session_ended(live_site):
    """4001 only when the session is over: at the logout's commit (a wake), not at the next full scan; a plain
    GET of /live, the page's question after a refused reconnect, then answers 401."""
    site = live_site
    alice = await site.as_user("alice")
    ws = await connect_as(site, alice)
    await next_message(ws, lambda m: m["type"] == "snapshot")
    site.srv.parts.live.full_scan_s = 3600  # only the logout's wake can close it now
    r = await alice.post("/logout")
    assert r.code in (302, 303)
    assert await _close_code(ws) == SESSION_ENDED[0] == 4001
    assert ws.close_reason == SESSION_ENDED[1]
    probe = await site.srv.fetch("/live", headers={"Cookie": f"fm_session={alice.cookies.get('fm_session', '')}"})
    assert probe.code == 401


async def test_a_server_that_stops_closes_sockets_as_going_away(make_config, tmp_path):
    """1001 on shutdown: the page's session is still good and it reconnects (static/live.js); and a plain
    GET of /live with that session, asked of the next server, is not a 401."""
    from fogmachine.app import Server
    from fogmachine.services.users import create_user
    from tests.conftest import RunningServer
    from tests.web.pages.conftest import Site, password_hash, write_catalog

    config = make_config(local_catalog=write_catalog(tmp_path))
    first = Server(config)
    await first.start()
    try:
        uid = (await first.ctx.db.run(create_user, "alice", "x", password_hash=password_hash())).id
        site = Site(RunningServer(first, f"http://127.0.0.1:{first.port}"), {"alice": uid})
        alice = await site.as_user("alice")
        ws = await connect_as(site, alice)
        await next_message(ws, lambda m: m["type"] == "snapshot")
    finally:
        await first.stop()
    assert await _close_code(ws) == GOING_AWAY[0] == 1001
    second = Server(make_config(local_catalog=write_catalog(tmp_path), listen_port=str(first.port)))
    await second.start()
    try:
        again = RunningServer(second, f"http://127.0.0.1:{second.port}")
        probe = await again.fetch("/live", headers={"Cookie": f"fm_session={alice.cookies['fm_session']}"})
        assert probe.code == 400  # "Can 'Upgrade' only to 'WebSocket'": the session holds
        ws = await connect_as(Site(again, {"alice": uid}), alice)
        assert (await next_message(ws, lambda m: m["type"] == "snapshot"))["type"] == "snapshot"
        ws.close()
    finally:
        await second.stop()
