"""Server-side sessions through the running server, on every database (issue 11, section 3).

Before the fix the cookie was a signed user id valid 14 days: a copy of it kept
working after logout, after a password change and after the account was disabled
and enabled again. Each test below keeps such a copy and shows it refused.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import tornado.httpclient
import tornado.websocket
from sqlalchemy import select

from fogmachine.db.models import AuditEvent, UserSession
from tests.web.pages.conftest import PASSWORD, PageClient, Site, open_site

NEW_PASSWORD = "ochre lantern quietly"


@pytest.fixture
async def dbsite(make_config, start_server, tmp_path, database_url) -> Site:
    """The ``site`` server (conftest's open_site) with one host."""
    return await open_site(make_config, start_server, tmp_path, {"h1": {"cpus": 8, "memory_mb": 16384}},
                           database_url)


def copy_of(client: PageClient) -> PageClient:
    """Another browser holding the same cookies (a stolen or copied cookie)."""
    return PageClient(client.srv, dict(client.cookies))


async def logged_in(client: PageClient) -> bool:
    r = await client.get("/profile")
    assert r.code in (200, 302, 303), r.code
    return r.code == 200


def audit_actions(site: Site, prefix: str) -> list[str]:
    return site.ctx.db.run_sync(lambda s: list(s.scalars(
        select(AuditEvent.action).where(AuditEvent.action.like(prefix + "%")).order_by(AuditEvent.id))))


async def test_logout_ends_the_session_server_side(dbsite):
    alice = await dbsite.as_user("alice")
    thief = copy_of(alice)
    assert await logged_in(thief)
    assert dbsite.ctx.db.run_sync(lambda s: s.scalar(select(UserSession.token_hash))) != alice.cookies["fm_session"]
    r = await alice.post("/logout")
    assert r.code == 303
    assert not await logged_in(thief)
    r = await thief.get("/api/v1/users/me")
    assert r.code == 401
    assert "user.logout" in audit_actions(dbsite, "user.logout")


async def test_password_change_ends_every_other_session(dbsite):
    here, there = await dbsite.as_user("alice"), await dbsite.as_user("alice")
    copied = copy_of(there)
    r = await here.post("/profile/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                              "confirm_password": NEW_PASSWORD})
    assert r.code == 303, r.text[:500]
    assert await logged_in(here)
    assert not await logged_in(there) and not await logged_in(copied)
    # The API's password change (with the cookie) does the same, keeping its own session.
    other = PageClient(dbsite.srv)
    await other.login("alice", NEW_PASSWORD)
    r = await here.srv.fetch("/api/v1/users/me/password", method="POST",
                             body=json.dumps({"current_password": NEW_PASSWORD, "new_password": PASSWORD}),
                             headers={"Cookie": "; ".join(f"{k}={here.cookies[k]}" for k in ("fm_session", "_xsrf")),
                                      "X-XSRFToken": here.cookies["_xsrf"], "Content-Type": "application/json"})
    assert r.code == 204, r.body
    assert await logged_in(here) and not await logged_in(other)


async def test_disabling_a_user_ends_all_their_sessions(dbsite):
    bob = await dbsite.as_user("bob")
    copied = copy_of(bob)
    root = await dbsite.as_user("root")
    r = await root.post(f"/admin/users/{dbsite.users['bob']}/disable")
    assert r.code == 303
    r = await root.post(f"/admin/users/{dbsite.users['bob']}/enable")
    assert r.code == 303
    # Enabled again, but the sessions from before stay ended.
    assert not await logged_in(bob) and not await logged_in(copied)
    ended = dbsite.ctx.db.run_sync(lambda s: set(s.scalars(
        select(UserSession.end_reason).where(UserSession.user_id == dbsite.users["bob"]))))
    assert ended == {"account disabled"}


async def test_profile_lists_sessions_and_logs_out_one_or_everywhere(dbsite):
    phone = PageClient(dbsite.srv)
    r = await phone.post("/login", {"username": "alice", "password": PASSWORD},
                         headers={"User-Agent": "PhoneBrowser/1.0 \x9b31m\x85red"})
    assert r.code == 303, (r.code, r.text[:300])
    laptop = PageClient(dbsite.srv)
    await laptop.post("/login", {"username": "alice", "password": PASSWORD},
                      headers={"User-Agent": "LaptopBrowser/2.0 <script>x</script>"})
    page = await laptop.get("/profile")
    assert page.code == 200 and "Where you are logged in" in page.text
    stored = dbsite.ctx.db.run_sync(lambda s: sorted(s.scalars(select(UserSession.user_agent))))
    # HTTP itself refuses ASCII control characters in a header; the C1 controls it lets through
    # (obs-text, here CSI and NEL) are dropped before the user agent is stored.
    assert "PhoneBrowser/1.0 31mred" in page.text and "\x9b" not in page.text and "\x85" not in page.text, stored
    assert "LaptopBrowser/2.0 &lt;script&gt;" in page.text and "(this one)" in page.text
    assert page.text.count('action="/profile/sessions/') == 3  # two "log out" buttons and "everywhere"
    ids = dbsite.ctx.db.run_sync(lambda s: dict(s.execute(select(UserSession.user_agent, UserSession.id)).all()))
    phone_id = next(i for ua, i in ids.items() if ua.startswith("PhoneBrowser"))
    # Without the form's XSRF token: refused, nothing ends.
    r = await laptop.post(f"/profile/sessions/{phone_id}/end", xsrf=None)
    assert r.code == 403 and await logged_in(phone)
    # Someone else's session: as if it did not exist.
    bob = await dbsite.as_user("bob")
    r = await bob.post(f"/profile/sessions/{phone_id}/end")
    assert r.code == 404 and await logged_in(phone)
    r = await laptop.post(f"/profile/sessions/{phone_id}/end")
    assert r.code == 303 and not await logged_in(phone) and await logged_in(laptop)
    again = PageClient(dbsite.srv)
    await again.login("alice")
    r = await laptop.post("/profile/sessions/end-all")
    assert r.code == 303 and r.location == "/login"
    assert not await logged_in(laptop) and not await logged_in(again)
    assert audit_actions(dbsite, "session.") == ["session.end", "session.end_all"]


async def test_the_live_socket_takes_the_session_and_closes_when_it_ends(dbsite):
    alice = await dbsite.as_user("alice")
    url = dbsite.srv.base_url.replace("http://", "ws://") + "/live"
    request = tornado.httpclient.HTTPRequest(url, headers={"Cookie": f"fm_session={alice.cookies['fm_session']}"})
    ws = await tornado.websocket.websocket_connect(request)
    first = json.loads(await asyncio.wait_for(ws.read_message(), 30))
    assert first["type"] == "snapshot"
    other = await dbsite.as_user("alice")
    ids = dbsite.ctx.db.run_sync(lambda s: sorted(s.scalars(select(UserSession.id))))
    r = await other.post(f"/profile/sessions/{ids[0]}/end")
    assert r.code == 303

    async def closed() -> None:
        while await ws.read_message() is not None:
            pass

    await asyncio.wait_for(closed(), 60)  # the feed's next full scan (10 s) closes it
    assert ws.close_code == 4001
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await tornado.websocket.websocket_connect(request)
    assert info.value.code == 401
