"""My reservations and every action on a guest's row: success, refusal, permission, XSRF."""

import asyncio
import time
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from fogmachine.db.models import AuditEvent, Guest, Step
from fogmachine.web.pages.common import XSRF_MESSAGE
from tests.support import testhosts
from tests.support.tcpproxy import TcpProxy
from tests.web.pages.conftest import open_site


def row_of(text, gid):
    start = text.index(f'data-guest-id="{gid}"')
    return text[start:text.index("</tr>", start)]


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.shown = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and "data-action" in attrs and "hidden" not in attrs:
            self.shown.add(attrs["data-action"])


def visible_actions(row):
    parser = _Forms()
    parser.feed(row)
    return parser.shown


async def wait_for(check, what: str, timeout: float = 30) -> None:
    """Poll ``check`` until it holds (a positive signal, however loaded the machine is)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        await asyncio.sleep(0.05)


async def state_of(site, gid):
    return await site.ctx.db.run(lambda s: s.get(Guest, gid).state)


async def test_list_shows_only_my_guests_with_their_actions(site):
    mine = await site.guest("alice", "web1")
    theirs = await site.guest("bob", "bob1")
    alice = await site.as_user("alice")
    r = await alice.get("/guests")
    assert r.code == 200 and "web1" in r.text and "bob1" not in r.text and f'data-guest-id="{theirs}"' not in r.text
    row = row_of(r.text, mine)
    assert "running" in row and "ready" in row and ("h1" in row or "h2" in row)
    assert {"stop", "restart", "pause", "destroy", "refresh", "extend", "delete"} <= visible_actions(row)
    assert "unpause" not in visible_actions(row) and "start" not in visible_actions(row)
    # an administrator's "my reservations" is theirs too; everyone's is on the admin page
    root = await site.as_user("root")
    assert "web1" not in (await root.get("/guests")).text


async def test_pause_unpause_and_refusals_come_back_as_flashes(site):
    gid = await site.guest("alice", "web1")
    c = await site.as_user("alice")
    r = await c.post(f"/guests/{gid}/pause")
    assert r.code == 303 and r.location == "/guests"
    page = await c.follow(r)
    assert ("ok", "web1: paused.") in page.flashes
    assert await state_of(site, gid) == "paused"
    assert {"unpause", "destroy"} <= visible_actions(row_of(page.text, gid))
    assert "pause" not in visible_actions(row_of(page.text, gid))
    r = await c.post(f"/guests/{gid}/pause", {"back": "/"})
    assert r.code == 303 and r.location == "/"
    assert ("error", "guest web1 is already paused") in (await c.follow(r)).flashes
    r = await c.post(f"/guests/{gid}/unpause", {"back": "https://evil.example.org/"})
    assert r.location == "/guests"  # only local paths
    assert ("ok", "web1: running again.") in (await c.follow(r)).flashes
    assert await state_of(site, gid) == "running"
    for action, said in (("refresh", "web1: refreshed."), ("restart", "web1: restarting."),
                         ("destroy", "web1: powered off."), ("start", "web1: started.")):
        r = await c.post(f"/guests/{gid}/{action}", {"confirm": "yes"})  # restart and power off ask first
        assert (await c.follow(r)).flashes == [("ok", said)], action


async def test_extend(site):
    gid = await site.guest("alice", "web1", days=3)
    before = await site.ctx.db.run(lambda s: s.get(Guest, gid).expires_at)
    c = await site.as_user("alice")
    page = await c.follow(await c.post(f"/guests/{gid}/extend", {"days": "2"}))
    assert page.flashes[0][0] == "ok" and page.flashes[0][1].startswith("web1: extended by 2 day(s)")
    after = await site.ctx.db.run(lambda s: s.get(Guest, gid).expires_at)
    assert (after - before).days == 2
    for days in ("30", "30"):  # 3 + 2 + 60 days: within the longest lease of 90
        assert (await c.follow(await c.post(f"/guests/{gid}/extend", {"days": days}))).flashes[0][0] == "ok"
    after = await site.ctx.db.run(lambda s: s.get(Guest, gid).expires_at)
    for days, message in (("0", "web1: days must be between 1 and 30"), ("soon", "web1: days must be a whole number"),
                          ("30", "extending web1 by 30 days would pass the longest lease")):
        r = await c.post(f"/guests/{gid}/extend", {"days": days})
        assert r.code == 303 and r.location == "/guests"  # post, redirect, get: for a refusal too
        page = await c.follow(r)
        assert page.code == 200 and page.flashes == []
        row = row_of(page.text, gid)  # the message under the field, in the row's menu (open), what was typed kept
        assert '<details class="more" open>' in row and f'value="{days}"' in row and 'aria-invalid="true"' in row
        assert f'aria-describedby="extend-{gid}-days-error"' in row
        assert f'<span class="field-error" id="extend-{gid}-days-error">{message}' in row, row
        assert 'aria-invalid' not in (await c.get("/guests")).text  # shown once
    assert await site.ctx.db.run(lambda s: s.get(Guest, gid).expires_at) == after


async def test_power_off_and_restart_ask_first_like_delete(site):
    gid = await site.guest("alice", "web1")
    c = await site.as_user("alice")
    row = row_of((await c.get("/guests")).text, gid)
    for action, question in (("destroy", "Power off web1?"), ("restart", "Restart web1?"), ("delete", "Delete web1?")):
        assert f'data-action="{action}" data-confirm="{question}' in row, action  # the script asks in the page
        page = await c.get(f"/guests/{gid}/{action}?back=/guests/{gid}")  # without script, a page asks
        assert page.code == 200 and f"<h1>{question}</h1>" in page.text and f'value="/guests/{gid}"' in page.text
        r = await c.post(f"/guests/{gid}/{action}", {"back": f"/guests/{gid}"})  # no confirm=yes: still a question
        assert r.code == 200 and f"<h1>{question}</h1>" in r.text
    assert await state_of(site, gid) == "running"
    assert (await c.get(f"/guests/{gid}/pause")).code == 405  # only the actions that ask have a question page
    r = await c.post(f"/guests/{gid}/destroy", {"confirm": "yes", "back": f"/guests/{gid}"})
    assert r.code == 303 and r.location == f"/guests/{gid}"
    assert ("ok", "web1: powered off.") in (await c.follow(r)).flashes
    assert await state_of(site, gid) == "shutoff"
    bob = await site.as_user("bob")
    assert (await bob.get(f"/guests/{gid}/destroy")).code == 404
    assert (await bob.post(f"/guests/{gid}/restart")).code == 404  # no question about another's guest either


async def test_delete_asks_first(site):
    gid = await site.guest("alice", "web1")
    c = await site.as_user("alice")
    r = await c.get(f"/guests/{gid}/delete")
    assert r.code == 200 and "Delete web1?" in r.text
    r = await c.post(f"/guests/{gid}/delete")  # no confirm=yes (no script): the question, not the deed
    assert r.code == 200 and "Delete web1?" in r.text
    assert await site.ctx.db.run(lambda s: s.get(Guest, gid)) is not None
    r = await c.post(f"/guests/{gid}/delete", {"confirm": "yes"})
    assert ("ok", "web1: deleted.") in (await c.follow(r)).flashes
    # (Only managed rows count: a host resync that read the domain just before it was undefined may
    # briefly record it as an unmanaged domain, which only administrators see.)
    assert not await site.ctx.db.run(lambda s: s.scalars(select(Guest.id).where(
        Guest.live_name == "web1", Guest.managed.is_(True))).all())
    row = await site.ctx.db.run(lambda s: s.get(Guest, gid))  # kept as history (tests/web/pages/test_history.py)
    assert (row.step, row.step_reason) == ("retired", "deleted by alice")


async def test_an_administrator_may_delete_anyway_when_the_host_is_down(make_config, start_server, tmp_path,
                                                                       real_hosts, database_url):
    """The host is a test-driver host served by the real libvirtd on 127.0.0.1 through a TCP forwarder;
    cutting the forwarder is a real fault (connections reset, reconnects refused), for this test alone."""
    path = testhosts.write_host(tmp_path / "hosts", "h1", cpus=8, memory_mb=16384)[len("test://"):]
    with TcpProxy(("127.0.0.1", 16509)) as proxy:
        site = await open_site(make_config, start_server, tmp_path, {"h1": f"test+tcp://127.0.0.1:{proxy.port}{path}"},
                               database_url)
        gid = await site.guest("alice", "web1")
        proxy.cut()  # the cable is pulled
        conn = site.ctx.hosts.get("h1")
        await wait_for(lambda: not conn.connected, "h1 to be down after the cut")
        alice = await site.as_user("alice")
        r = await alice.post(f"/guests/{gid}/delete", {"confirm": "yes"})
        flashes = (await alice.follow(r)).flashes
        assert flashes[0][0] == "error" and "host h1" in flashes[0][1] and "anyway" not in r.text
        root = await site.as_user("root")
        r = await root.post(f"/guests/{gid}/delete", {"confirm": "yes"})
        assert r.code == 502 and "Nothing was deleted" in r.text and "Delete web1 anyway" in r.text
        assert (await site.ctx.db.run(lambda s: s.get(Guest, gid).step)) == Step.READY
        r = await root.post(f"/guests/{gid}/delete", {"confirm": "yes", "force": "yes"})
        assert ("ok", "web1: deleted; whatever is left on its host is removed when the host answers again.") in \
            (await root.follow(r)).flashes
        row = await site.ctx.db.run(lambda s: s.get(Guest, gid))
        assert row.step == Step.RETIRED and row.domain_name == "web1" and "host h1" in row.step_reason, \
            row.step_reason
        r = await alice.post(f"/guests/{gid}/delete", {"confirm": "yes", "force": "yes"})  # owners may not force
        assert r.code == 403


@pytest.mark.parametrize("action", ["start", "stop", "restart", "pause", "unpause", "destroy", "refresh",
                                    "extend", "delete"])
async def test_another_users_guest_does_not_exist(site, action):
    gid = await site.guest("alice", "web1")
    bob = await site.as_user("bob")
    r = await bob.post(f"/guests/{gid}/{action}", {"days": "1", "confirm": "yes"})
    assert r.code == 404 and f"no guest with id {gid}" in r.text and "Not found" in r.text
    assert await state_of(site, gid) == "running"
    assert (await bob.get(f"/guests/{gid}/row")).code == 404
    assert (await bob.get(f"/guests/{gid}/delete")).code == 404


@pytest.mark.parametrize("action", ["pause", "extend", "delete"])
async def test_actions_need_a_session_and_an_xsrf_token(site, action):
    gid = await site.guest("alice", "web1")
    anonymous = site.client()
    r = await anonymous.post(f"/guests/{gid}/{action}", {"days": "1", "confirm": "yes"})
    assert r.code == 303 and r.location.startswith("/login?next=")
    alice = await site.as_user("alice")
    r = await alice.post(f"/guests/{gid}/{action}", {"days": "1", "confirm": "yes"}, xsrf=None)
    assert r.code == 403 and XSRF_MESSAGE in r.text.replace("&#39;", "'")
    r = await alice.post(f"/guests/{gid}/{action}", {"days": "1", "confirm": "yes"},
                         headers={"Cookie": "fm_session=" + alice.cookies["fm_session"] + "; _xsrf=forged"})
    assert r.code == 403
    g = await site.ctx.db.run(lambda s: s.get(Guest, gid))
    assert g is not None and g.state == "running"
    done = await site.ctx.db.run(lambda s: s.scalars(select(AuditEvent.action).where(
        AuditEvent.object_id == str(gid))).all())
    assert f"guest.{action}" not in done


async def test_admin_acts_on_anyones_guest(site):
    gid = await site.guest("alice", "web1")
    root = await site.as_user("root")
    r = await root.post(f"/guests/{gid}/pause", {"back": "/admin"})
    assert r.location == "/admin" and ("ok", "web1: paused.") in (await root.follow(r)).flashes
    who = await site.ctx.db.run(lambda s: s.scalars(select(AuditEvent.actor_name).where(
        AuditEvent.action == "guest.pause")).all())
    assert who == ["root"]


async def test_row_fragment_for_the_live_page(site):
    gid = await site.guest("alice", "web1")
    c = await site.as_user("alice")
    r = await c.get(f"/guests/{gid}/row?view=reservations")
    assert r.code == 200 and r.text.lstrip().startswith("<tr") and 'action="/guests/' in r.text
    r = await c.get(f"/guests/{gid}/row?view=mine")
    assert r.code == 200 and 'action="/guests/' not in r.text
    r = await c.get(f"/guests/{gid}/row?view=<script>")
    assert r.code == 200 and "<script>" not in r.text
    assert (await site.client().get(f"/guests/{gid}/row")).code == 303
