"""The guest page, /guests/ID, through real HTTP on test-driver hosts, on each database."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from urllib.parse import quote

from sqlalchemy import select

from fogmachine.db.models import Guest, GuestStep
from tests.web.pages.conftest import open_site


def section(text: str, section_id: str) -> str:
    start = text.index(f'id="{section_id}"')
    return text[start:text.index("</section>", start)]


async def set_address(site, gid, ip="192.0.2.10", hostname="web1.lab"):
    def write(session):
        guest = session.get(Guest, gid)
        guest.ip, guest.hostname = ip, hostname
    await site.ctx.db.run(write)


async def steps_of(site, gid):
    return await site.ctx.db.run(lambda s: [(r.step, r.at, r.reason) for r in s.scalars(
        select(GuestStep).where(GuestStep.guest_id == gid).order_by(GuestStep.id))])


async def test_the_owner_sees_every_part(site):
    gid = await site.guest("alice", "web1", days=3)
    await set_address(site, gid)  # as its phone-home would (tests/web/test_callbacks.py)
    alice = await site.as_user("alice")
    r = await alice.get(f"/guests/{gid}")
    assert r.code == 200, r.text[:2000]
    page = unescape(r.text)
    host = await site.ctx.db.run(lambda s: s.get(Guest, gid).host.name)
    assert "<h1>web1</h1>" in page and 'id="status-sentence">Ready and running<' in page
    facts = section(page, "facts")
    for part in ("tiny", "local", host, "256 MiB RAM", "1 vCPU", "alice", "tests", "Lease ends", " left)"):
        assert part in facts, part
    address = section(page, "address")
    assert "192.0.2.10" in address and "web1.lab" in address
    assert '<code id="ssh-line">ssh alice@192.0.2.10</code>' in address and 'data-copy="ssh-line"' in address
    actions = section(page, "actions")
    for action in ("stop", "restart", "pause", "destroy", "refresh", "delete", "extend"):
        assert f'action="/guests/{gid}/{action}"' in actions, action
    # every power action is there for live.js to show when it makes sense; those that make none now are hidden
    shown = dict(re.findall(r'action="/guests/\d+/(\w+)" data-action="\w+"( hidden)?', actions))
    assert shown == {"start": " hidden", "unpause": " hidden", "stop": "", "restart": "", "pause": "",
                     "destroy": "", "refresh": ""}
    assert "+1 day" in actions and "+7 days" in actions and 'id="extend-days"' in actions
    assert 'data-confirm="Power off web1?' in actions and 'data-confirm="Restart web1?' in actions
    steps = section(page, "steps")
    assert [m for m in re.findall(r'class="step step-(\w+)"', steps)] == ["defining", "booting", "ready"]
    timeline = section(page, "timeline")
    assert "guest.checkout" in timeline and "<th>From</th>" not in timeline
    assert "keeps no serial console logs" in section(page, "console")  # console_log_dir is not set


async def test_the_reason_is_always_visible_not_only_when_failed(site):
    """Issue 13: the reason stands on the page and in the list's row whatever the step (here a ready, running
    guest with a warning, as the disk boot switch leaves one), not in a tooltip."""
    gid = await site.guest("alice", "web1")
    warning = "still boots from the network: the switch to its disk is retried"
    await site.ctx.db.run(lambda s: setattr(s.get(Guest, gid), "step_reason", warning))
    alice = await site.as_user("alice")
    page = unescape((await alice.get(f"/guests/{gid}")).text)
    assert f'id="status-reason"><strong>Reason:</strong> {warning}</p>' in page
    assert 'id="status-sentence">Ready and running<' in page
    for path in ("/guests", "/"):
        listed = unescape((await alice.get(path)).text)
        assert f'<div class="muted small reason" data-field="step_reason">{warning}</div>' in listed, path
        assert "title=" not in listed[listed.index(f'data-guest-id="{gid}"'):listed.index(warning)], path


async def test_provisioning_writes_its_steps_with_their_times(site):
    """A real checkout on the test driver: each step it went through, in order, each at its time."""
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=1)
    gid = await site.guest("alice", "web1")
    rows = await steps_of(site, gid)
    assert [step for step, _, _ in rows] == ["defining", "booting", "ready"]
    times = [at for _, at, _ in rows]
    assert times == sorted(times) and times[0] >= before
    alice = await site.as_user("alice")
    r = await alice.post(f"/guests/{gid}/delete", {"confirm": "yes", "back": f"/guests/{gid}"})
    assert r.code == 303
    assert (await steps_of(site, gid))[-1][::2] == ("retired", "deleted by alice")
    page = unescape((await alice.get(f"/guests/{gid}")).text)  # history stays visible to its owner
    assert "Retired: deleted by alice" in page and "step-retired" in section(page, "steps")
    assert "guest.delete" in section(page, "timeline") and 'id="actions"' not in page


async def test_another_user_gets_the_404_of_a_missing_guest(site):
    gid = await site.guest("alice", "web1")
    bob = await site.as_user("bob")
    theirs = await bob.get(f"/guests/{gid}")
    missing = await bob.get(f"/guests/{gid + 1000}")
    assert theirs.code == missing.code == 404
    said = [re.search(r'<section class="card narrow error-page">.*?</section>', r.text, re.S).group(0)
            for r in (theirs, missing)]
    assert said[0].replace(f"id {gid}", "id N") == said[1].replace(f"id {gid + 1000}", "id N")
    assert f"no guest with id {gid}" in said[0]
    assert "web1" not in theirs.text
    assert (await bob.get("/guests/99999999999999")).code == 404  # beyond any id: not there, no error


async def test_an_administrator_sees_anyones_guest(site):
    gid = await site.guest("alice", "web1")
    root = await site.as_user("root")
    r = await root.get(f"/guests/{gid}")
    assert r.code == 200 and "<h1>web1</h1>" in r.text and "<th>From</th>" in section(r.text, "timeline")
    assert f'action="/guests/{gid}/delete"' in r.text


async def test_anonymous_is_sent_to_log_in(site):
    gid = await site.guest("alice", "web1")
    r = await site.client().get(f"/guests/{gid}")
    assert r.code == 303 and r.location == "/login?next=" + quote(f"/guests/{gid}", safe="")


async def test_extend_from_the_page(site):
    """It writes: on each database. The buttons and the field; a refused number comes back under the field
    after a redirect (Back and reload never resend it), with what was typed and the guest's name."""
    gid = await site.guest("alice", "web1", days=3)
    expiry = await site.ctx.db.run(lambda s: s.get(Guest, gid).expires_at)
    alice = await site.as_user("alice")
    back = f"/guests/{gid}"
    for days, total in (("1", 1), ("7", 8), ("30", 38), ("30", 68)):  # 3 + 68 days: 19 left of the 90
        r = await alice.post(f"/guests/{gid}/extend", {"days": days, "back": back})
        assert r.code == 303 and r.location == back
        page = await alice.follow(r)
        assert page.flashes[0][0] == "ok" and page.flashes[0][1].startswith(f"web1: extended by {days} day(s)")
        now = await site.ctx.db.run(lambda s: s.get(Guest, gid).expires_at)
        assert now - expiry == dt.timedelta(days=total)
    for typed, message in (("soon", "web1: days must be a whole number of days"),
                           ("0", "web1: days must be between 1 and 30"),
                           ("30", "extending web1 by 30 days would pass the longest lease of 90 days")):
        r = await alice.post(f"/guests/{gid}/extend", {"days": typed, "back": back})
        assert r.code == 303 and r.location == back, typed
        page = await alice.follow(r)
        assert page.code == 200 and page.flashes == []
        form = section(page.text, "actions")
        field = re.search(r'<input id="extend-days"[^>]*>', form).group(0)
        assert f'value="{typed}"' in field and 'aria-invalid="true"' in field and "autofocus" in field
        assert f'aria-describedby="extend-{gid}-days-error"' in field
        assert (page.field_error(f"extend-{gid}", "days") or "").startswith(message), form
        again = await alice.get(back)  # shown once: a reload is a clean page
        assert 'aria-invalid' not in again.text and "days-error" not in again.text
    assert await site.ctx.db.run(lambda s: s.get(Guest, gid).expires_at) == expiry + dt.timedelta(days=68)


async def test_power_off_and_restart_from_the_page_ask_first(site):
    gid = await site.guest("alice", "web1")
    alice = await site.as_user("alice")
    back = f"/guests/{gid}"
    for action, question in (("restart", "Restart web1?"), ("destroy", "Power off web1?")):
        r = await alice.post(f"/guests/{gid}/{action}", {"back": back})  # the page's script off: a question
        assert r.code == 200 and f"<h1>{question}</h1>" in r.text and f'value="{back}"' in r.text
        r = await alice.post(f"/guests/{gid}/{action}", {"back": back, "confirm": "yes"})
        assert r.code == 303 and r.location == back
    page = await alice.follow(r)
    assert ("ok", "web1: powered off.") in page.flashes
    assert "Ready, powered off: start it to use it" in page.text and f'action="/guests/{gid}/start"' in page.text


async def test_the_serial_log_tail(make_config, start_server, tmp_path, database_url):
    logs = tmp_path / "consoles"
    logs.mkdir()
    site = await open_site(make_config, start_server, tmp_path, {"h1": {"cpus": 4, "memory_mb": 8192}},
                           database_url, console_log_dir=str(logs))
    gid = await site.guest("alice", "web1")
    alice = await site.as_user("alice")
    assert f"on its host h1, in {logs}/web1.log" in unescape(section((await alice.get(f"/guests/{gid}")).text,
                                                                     "console"))
    (logs / "web1.log").write_bytes(b"x" * 5000 + b"\n\x1b[1mBooting\x1b[0m <script>\r\n"
                                    b"caf\xc3\xa9 \xff\x00\x07 ok\r\nweb1 login: ")
    console = section((await alice.get(f"/guests/{gid}")).text, "console")
    shown = re.search(r"<pre[^>]*>(.*?)</pre>", console, re.S).group(1)
    assert shown == "Booting &lt;script&gt;\ncafé \ufffd ok\nweb1 login: "
    assert "(its last 4 KB)" in console
    root = await site.as_user("root")
    await root.post(f"/guests/{gid}/delete", {"confirm": "yes"})
    console = section((await alice.get(f"/guests/{gid}")).text, "console")
    assert "<pre" not in console and "no longer shown" in console  # its name may be a new guest's now


async def test_lists_link_to_the_page(site):
    gid = await site.guest("alice", "web1")
    link = f'href="/guests/{gid}"'
    alice = await site.as_user("alice")
    for path in ("/", "/guests", "/hosts", f"/guests/{gid}/row?view=reservations"):
        assert link in (await alice.get(path)).text, path
    root = await site.as_user("root")
    assert link in (await root.get("/admin")).text
    await root.post(f"/guests/{gid}/delete", {"confirm": "yes"})
    assert link in (await alice.get("/guests")).text  # the history's row too
    assert link in (await root.get("/admin?guests=retired")).text


async def test_one_primary_action_per_row_and_the_rest_under_more(site):
    gid = await site.guest("alice", "web1")
    alice = await site.as_user("alice")
    text = (await alice.get("/guests")).text
    row = text[text.index(f'data-guest-id="{gid}"'):]
    row = row[:row.index("</tr>")]
    primary, more = row.split('<details class="more"', 1)
    shown = re.findall(r'<form [^>]*data-action="(\w+)"(?![^>]*hidden)[^>]*>', primary)
    assert shown == ["stop"]
    assert "<summary" in more and all(f'data-action="{a}"' in more for a in
                                      ("restart", "pause", "destroy", "refresh", "extend", "delete"))


async def test_a_refused_extend_is_said_even_where_its_form_is_not(site):
    """Sent back to a page that does not show the form (here the overview, whose rows have no actions):
    the message is at the end of the page instead of lost."""
    gid = await site.guest("alice", "web1")
    alice = await site.as_user("alice")
    page = await alice.follow(await alice.post(f"/guests/{gid}/extend", {"days": "0", "back": "/"}))
    assert '<p class="flash flash-error" role="alert" id="unshown-failure">web1: days must be between 1 and 30' \
        in page.text
    assert "unshown-failure" not in (await alice.get("/")).text
