"""The guest lists through HTTP: search, filters, sorting and paging in the URL on the overview, My
reservations, the hosts page and the admin page; what a user may not ask for; bad arguments said (400)
under their field, never a 500."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

from sqlalchemy import update

from fogmachine.db.models import Guest, Host
from fogmachine.web.pages import guestlist

ROW = re.compile(r'<tr data-guest-id="\d+" data-view="[a-z]+" class="guest-row">\s*<td data-label="Guest" class="name">'
                 r'\s*<a href="/guests/\d+" class="guest-link"><strong>([^<]+)</strong>')


def listed(html: str) -> list[str]:
    """The names in the page's live guest list, top to bottom."""
    return ROW.findall(html)


async def on_host(site, host: str, owner: str, name: str) -> int:
    """A guest checked out onto ``host``: the other host is disabled meanwhile."""
    other = "h2" if host == "h1" else "h1"
    await site.ctx.db.run(lambda s: s.execute(update(Host).where(Host.name == other).values(enabled=False)))
    try:
        return await site.guest(owner, name)
    finally:
        await site.ctx.db.run(lambda s: s.execute(update(Host).where(Host.name == other).values(enabled=True)))


async def test_the_lists_search_filter_sort_and_page_as_the_url_says(site, monkeypatch):
    web1 = await on_host(site, "h1", "alice", "web1")
    await on_host(site, "h2", "alice", "web2")
    await on_host(site, "h1", "alice", "db1")
    await on_host(site, "h2", "bob", "bob1")
    alice = await site.as_user("alice")
    await alice.post(f"/guests/{web1}/pause")
    await site.wait_for(web1, lambda g: g.state == "paused")

    for path in ("/", "/guests"):
        assert listed((await alice.get(path)).text) == ["web1", "web2", "db1"], path  # as they were made
        assert listed((await alice.get(path + "?q=WEB")).text) == ["web1", "web2"]
        assert listed((await alice.get(path + "?state=paused")).text) == ["web1"]
        assert listed((await alice.get(path + "?host=h1")).text) == ["web1", "db1"]
        assert listed((await alice.get(path + "?host=h1&state=running")).text) == ["db1"]
        assert listed((await alice.get(path + "?sort=-name")).text) == ["web2", "web1", "db1"]
        assert listed((await alice.get(path + "?q=bob")).text) == []  # bob's guest is not hers to find

    page = (await alice.get("/guests?sort=name&q=w")).text
    assert listed(page) == ["web1", "web2"] and "1\u20132 of 2 matching guests" in page
    assert '<th scope="col" aria-sort="ascending"><a class="sort" href="/guests?q=w&amp;sort=-name">' in page
    assert '<th scope="col" aria-sort="none"><a class="sort" href="/guests?q=w&amp;sort=host">' in page
    assert 'value="w"' in page and '<input type="hidden" name="sort" value="name">' in page
    assert 'data-insert="no"' in page  # filtered: the live page adds no new guest to it
    assert '<input type="hidden" name="back" value="/guests?q=w&amp;sort=name">' in page  # actions come back here

    # the hosts page: one list, by host at first; a user's own guests only, and no owner to filter by
    page = (await alice.get("/hosts")).text
    assert listed(page) == ["web1", "db1", "web2"] and 'id="gl-owner"' not in page
    assert 'href="/hosts?host=h2#guests">list yours' in page
    assert listed((await alice.get("/hosts?host=h2")).text) == ["web2"]

    # administrators: everyone's, by owner too
    root = await site.as_user("root")
    assert listed((await root.get("/hosts?host=h2")).text) == ["web2", "bob1"]
    assert listed((await root.get("/hosts?owner=bob")).text) == ["bob1"]
    page = (await root.get("/admin?owner=alice&sort=-created")).text
    assert listed(page) == ["db1", "web2", "web1"] and 'id="gl-owner" name="owner" value="alice"' in page
    assert listed((await root.get("/admin?q=1&sort=owner")).text) == ["web1", "db1", "bob1"]
    # the two lists of the admin page keep each other's arguments
    page = (await root.get("/admin?owner=bob&user_role=user")).text
    assert 'href="/admin?user_role=user&amp;owner=bob&amp;sort=name#guests"' in page
    assert 'href="/admin?owner=bob&amp;user_role=user&amp;user_sort=role#users"' in page

    monkeypatch.setattr(guestlist, "PAGE_SIZE", 2)
    page = (await alice.get("/guests?sort=-name")).text
    assert listed(page) == ["web2", "web1"] and "1\u20132 of 3 guests" in page
    assert 'rel="next" href="/guests?sort=-name&amp;page=2">next' in page and "previous" not in page
    page = (await alice.get("/guests?sort=-name&page=2")).text
    assert listed(page) == ["db1"] and "3 of 3 guests" in page
    assert 'rel="prev" href="/guests?sort=-name">previous' in page and ">next<" not in page
    page = await alice.get("/guests?page=5")
    assert page.code == 200 and "No guests on this page" in page.text and 'href="/guests?page=2">last page' in page.text


async def test_a_user_cannot_list_anyone_elses_guests(site):
    await site.guest("bob", "bob1")
    alice = await site.as_user("alice")
    for path in ("/?owner=bob", "/guests?owner=bob", "/hosts?owner=bob"):
        r = await alice.get(path)
        assert r.code == 400 and "bob1" not in r.text, path
        assert "this list shows only your own guests" in r.text
    r = await alice.get("/hosts?sort=owner")
    assert r.code == 400 and "sort must be one of name, state, host, expires, created" in unescape(r.text)
    assert (await alice.get("/admin?owner=bob")).code == 403


async def test_bad_arguments_are_said_under_their_field_and_the_rest_is_listed(site):
    await site.guest("alice", "web1")
    alice = await site.as_user("alice")
    root = await site.as_user("root")
    cases = [
        (alice, "/guests?state=flying", "state", "state must be one of the states the list offers, not “flying”"),
        (alice, "/?state=RUNNING", "state", "state must be one of"),  # a whole, exact match
        (alice, "/guests?host=h1%20or%201%3D1", "host", "host must be a host&#x27;s name"),
        (alice, "/guests?q=" + "x" * 101, "q", "the search takes at most 100 characters"),
        (alice, "/guests?q=a%01b", "q", "no control characters"),
        (root, "/admin?owner=%3Cscript%3E", "owner", "owner must be a user&#x27;s name"),
        (root, "/hosts?owner=x%0Ay", "owner", "owner must be a user&#x27;s name"),
        (alice, "/guests?sort=password_hash", None, "sort must be one of"),
        (alice, "/guests?sort=--name", None, "sort must be one of"),
        (alice, "/guests?page=0", None, "page must be a whole number from 1 to 100000, not “0”"),
        (alice, "/?page=1e3", None, "page must be a whole number"),
        (alice, "/hosts?page=99999999999999999999", None, "page must be a whole number"),
        (root, "/admin?guests=old", None, "guests must be retired, or left out for the live guests"),
    ]
    for client, path, field, message in cases:
        r = await client.get(path)
        assert r.code == 400, (path, r.code)
        assert message in r.text, (path, message)
        assert "web1" in r.text, path  # the list is still there, without what was refused
        if field is None:
            assert re.search(r'<p class="flash flash-error" role="alert">[^<]*' + re.escape(message), r.text), path
        else:
            assert f'aria-invalid="true" aria-describedby="gl-{field}-error"' in r.text, path
            assert f'<p class="field-error" id="gl-{field}-error">' in r.text, path
    page = (await alice.get("/guests?q=" + "x" * 101)).text
    assert 'value="' + "x" * 101 + '"' in page  # what was typed stays in its field


async def test_a_guest_that_expires_soon_stands_out(site):
    soon = await site.guest("alice", "web1")
    await site.guest("alice", "web2")
    ends = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=5, minutes=30)
    await site.ctx.db.run(lambda s: s.execute(update(Guest).where(Guest.id == soon).values(expires_at=ends)))
    alice = await site.as_user("alice")
    for path in ("/", "/guests", "/hosts"):
        text = (await alice.get(path)).text
        row = text[text.index(f'data-guest-id="{soon}"'):]
        row = row[:row.index("</tr>")]
        assert re.search(r'class="timeleft soon"[^>]*>expires in 5 h (29|30) min</span>', row), path
        assert text.count("timeleft soon") == 1, path  # web2 has three days left
    assert listed((await alice.get("/guests?sort=expires")).text) == ["web1", "web2"]
