"""Retired guests as history: their owner sees them below the live ones, administrators on the admin page."""

import re
from html import unescape

from fogmachine.db.models import Step
from fogmachine.services import expiry
from fogmachine.services.actor import Actor


def history_of(text):
    """The History section's HTML (empty when the page has none)."""
    start = text.find('<section id="history">')
    return text[start:text.index("</section>", start)] if start >= 0 else ""


async def retire(site, gid):
    assert await expiry.retire(site.ctx, Actor.system("expiry"), gid)
    return await site.wait_for(gid, lambda g: g.step == Step.RETIRED)


async def test_the_owner_sees_retired_guests_in_history(site):
    old = await site.guest("alice", "web1")
    live = await site.guest("alice", "web2")
    row = await retire(site, old)
    again = await site.guest("alice", "web1")  # the name is free again: live and history side by side
    alice = await site.as_user("alice")
    r = await alice.get("/guests")
    assert r.code == 200
    history = history_of(r.text)
    assert f'data-retired-id="{old}"' in history and "web1" in history and "reservation expired" in history
    assert "tiny" in history and row.created_at.strftime("%Y-%m-%d %H:%M UTC") in history
    assert row.retired_at.strftime("%Y-%m-%d %H:%M UTC") in history and "tests" in history  # the purpose
    assert "<form" not in history and f"/guests/{old}/" not in r.text  # no action on a retired guest
    assert "for 30 days" in history
    live_part = r.text[:r.text.index('<section id="history">')]
    assert f'data-guest-id="{live}"' in live_part and f'data-guest-id="{again}"' in live_part
    assert f'data-guest-id="{old}"' not in r.text and f'data-retired-id="{live}"' not in r.text


async def test_newest_retirement_first(site):
    first = await site.guest("alice", "a1")
    second = await site.guest("alice", "a2")
    await retire(site, first)
    await retire(site, second)
    history = history_of((await (await site.as_user("alice")).get("/guests")).text)
    assert re.findall(r'data-retired-id="(\d+)"', history) == [str(second), str(first)]


async def test_nobody_else_sees_them_but_administrators(site):
    gid = await site.guest("alice", "web1")
    await retire(site, gid)
    bob = await site.as_user("bob")
    r = await bob.get("/guests")
    assert "web1" not in r.text and "No retired guests." in history_of(r.text)
    root = await site.as_user("root")
    r = await root.get("/guests")  # an administrator's own reservations: not alice's
    assert "web1" not in r.text
    r = await root.get("/admin")  # the live list leaves retired guests out ...
    assert f'data-guest-id="{gid}"' not in r.text and 'href="/admin?guests=retired#guests"' in r.text
    r = await root.get("/admin?guests=retired")  # ... the retired view has them, with their owners
    assert r.code == 200 and "Retired guests (1)" in r.text
    row = r.text[r.text.index(f'data-retired-id="{gid}"'):]
    row = row[:row.index("</tr>")]
    assert "web1" in row and '<td data-label="Owner">alice</td>' in row and "reservation expired" in row
    assert 'data-live-list="admin"' not in r.text  # the live feed never inserts live guests into history
    r = await bob.get("/admin?guests=retired")
    assert r.code == 403 and "web1" not in r.text


async def test_admin_page_number_out_of_range_is_said_never_a_server_error(site):
    """A page number that is no number (or beyond any integer) is refused with the reason, the list shown
    from its first page; a page past the end is no error, the way back is a link."""
    root = await site.as_user("root")
    for page in ("99999999999999999999999", "-4", "x"):
        r = await root.get(f"/admin?guests=retired&page={page}")
        assert r.code == 400 and "No retired guests" in r.text, (page, r.text[:500])
        assert f"page must be a whole number from 1 to 100000, not “{page}”" in unescape(r.text)
    r = await root.get("/admin?guests=retired&page=7")
    assert r.code == 200 and "No retired guests on this page" in r.text
    assert 'href="/admin?guests=retired#guests">last page' in r.text


async def test_deleted_guests_are_history_too_on_each_database(site):
    """A delete used to remove the row: the guest vanished from History and from the Retired list (and on
    SQLite its id went to the next guest). Now it stays, with who deleted it beside the expired ones."""
    deleted = await site.guest("alice", "web1")
    expired = await site.guest("alice", "web2")
    alice = await site.as_user("alice")
    r = await alice.post(f"/guests/{deleted}/delete", {"confirm": "yes"})
    assert ("ok", "web1: deleted.") in (await alice.follow(r)).flashes
    await retire(site, expired)
    history = history_of((await alice.get("/guests")).text)
    assert re.findall(r'data-retired-id="(\d+)"', history) == [str(expired), str(deleted)]
    row = history[history.index(f'data-retired-id="{deleted}"'):]
    assert "web1" in row[:row.index("</tr>")] and "deleted by alice" in row[:row.index("</tr>")]
    assert "reservation expired" in history[history.index(f'data-retired-id="{expired}"'):]
    root = await site.as_user("root")
    r = await root.post(f"/guests/{(await site.guest('bob', 'web3'))}/delete", {"confirm": "yes"})
    assert r.code in (302, 303)
    r = await root.get("/admin?guests=retired")
    assert "Retired guests (3)" in r.text
    rows = {gid: r.text[r.text.index(f'data-retired-id="{gid}"'):] for gid in (deleted, expired)}
    assert "deleted by alice" in rows[deleted][:rows[deleted].index("</tr>")]
    assert "reservation expired" in rows[expired][:rows[expired].index("</tr>")]
    assert "deleted by root" in r.text and '<td data-label="Owner">bob</td>' in r.text
    r = await root.get("/admin")  # the live list has none of them
    assert f'data-guest-id="{deleted}"' not in r.text and f'data-guest-id="{expired}"' not in r.text
