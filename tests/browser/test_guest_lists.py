"""The guest lists in a real browser: a user searches, filters, sorts by a column head and pages, and the
URL holds it all (Back, Forward and reload give the same list); a bad argument in the URL is said under
its field; a guest that expires soon says so; the live updates still reach a filtered list; axe-core finds
nothing serious or critical on the lists in both themes, and at phone width the controls wrap.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import update

from fogmachine.db.models import Guest
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import CheckoutRequest, checkout
from fogmachine.services.users import create_user
from fogmachine.web.pages import guestlist
from tests.browser.test_accessibility import WIDTHS, axe_violations
from tests.browser.test_audit import ready
from tests.browser.test_dashboard import WAIT_MS, log_in
from tests.web.pages.conftest import PASSWORD, password_hash, write_catalog

pytestmark = pytest.mark.browser


@pytest.fixture
async def server(make_config, start_server, tmp_path, monkeypatch):
    """dave's web1, web2 and db1 (web2's lease ends in 5 hours) and root's root1; two guests a page."""
    monkeypatch.setattr(guestlist, "PAGE_SIZE", 2)
    config = make_config(hosts={"h1": {"cpus": 8, "memory_mb": 16384}, "h2": {"cpus": 4, "memory_mb": 8192}},
                         local_catalog=write_catalog(tmp_path))
    srv = await start_server(config)
    ids = {}
    for name, admin in (("root", True), ("dave", False)):
        ids[name] = (await srv.ctx.db.run(create_user, name, PASSWORD, is_admin=admin,
                                          password_hash=password_hash())).id
    for owner, name in (("dave", "web1"), ("dave", "web2"), ("dave", "db1"), ("root", "root1")):
        actor = Actor(ids[owner], owner, owner == "root")
        guest = await checkout(srv.ctx, actor, CheckoutRequest(name, "tiny", 3, "lists"))
        await ready(srv, guest.id)
        srv.guests = {**getattr(srv, "guests", {}), name: guest.id}
    soon = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=5)
    await srv.ctx.db.run(lambda s: s.execute(update(Guest).where(Guest.name == "web2").values(expires_at=soon)))
    return srv


async def names(page: Any) -> list[str]:
    return await page.locator("table[data-live-list] tr.guest-row td.name strong").all_text_contents()


async def serious(page: Any) -> list[str]:
    return [f"{v['id']}: {v['help']} {v['nodes'][:3]}" for v in await axe_violations(page)
            if v["impact"] in ("serious", "critical") or v["id"] in ("heading-order", "page-has-heading-one")]


async def test_filter_sort_and_page_through_the_url(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    ctx = await browser.new_context(viewport=WIDTHS["desktop"], bypass_csp=True)
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, base, "dave")
    await page.goto(base + "/guests")
    count = page.locator("#guests-count")
    await expect(count).to_have_text(re.compile(r"^1\u20132 of 3 guests"))
    assert await names(page) == ["web1", "web2"]
    # the lease that ends soon says so in words, on a badge
    web2 = page.locator("tr.guest-row", has_text="web2")
    await expect(web2.locator(".timeleft.soon")).to_have_text(re.compile(r"^expires in 4 h 5\d min$"))

    # the next page, by its link
    await page.click("nav.pager a[rel=next]")
    await page.wait_for_url(base + "/guests?page=2")
    assert await names(page) == ["db1"]
    await expect(count).to_have_text(re.compile(r"^3 of 3 guests"))

    # search and filter with the form: the URL says it, and paging starts again
    await page.fill("#gl-q", "WEB")
    await page.select_option("#gl-state", "running")
    await page.click("form.list-filter button[type=submit]")
    await page.wait_for_url(base + "/guests?q=WEB&state=running&host=")
    assert await names(page) == ["web1", "web2"]
    await expect(count).to_have_text(re.compile(r"^1\u20132 of 2 matching guests"))
    await expect(page.locator("#gl-q")).to_have_value("WEB")

    # sort by a column head, then the other way round; aria-sort follows
    head = page.locator("th", has=page.locator("a.sort", has_text="Guest"))
    await head.locator("a").click()
    await page.wait_for_url(re.compile(r"sort=name"))
    await expect(head).to_have_attribute("aria-sort", "ascending")
    await head.locator("a").click()
    await page.wait_for_url(re.compile(r"sort=-name"))
    await expect(head).to_have_attribute("aria-sort", "descending")
    assert await names(page) == ["web2", "web1"]
    sorted_url = page.url
    assert "q=WEB" in sorted_url and "state=running" in sorted_url
    await shoot(page, "guest-lists-filtered-sorted-desktop")
    assert await serious(page) == []

    # the live updates still reach the filtered rows: paused behind the page's back
    await page.evaluate("window.neverReloaded = true")
    web1 = await server.ctx.db.run(lambda s: s.get(Guest, server.guests["web1"]))
    host = await server.ctx.db.run(lambda s: s.get(Guest, server.guests["web1"]).host.name)
    await server.ctx.hosts.get(host).suspend(web1.domain_name)
    row = page.locator("tr.guest-row", has_text="web1")
    await expect(row.locator("[data-field=state]")).to_have_text("paused")
    assert await page.evaluate("window.neverReloaded") is True
    await page.reload()  # no longer running: gone from the running ones once the page is drawn again
    assert await names(page) == ["web2"]

    # Back and Forward walk the lists the URLs said
    await page.go_back()
    await page.wait_for_url(re.compile(r"sort=name$"))
    await expect(page.locator("th[aria-sort=ascending] a.sort")).to_have_text(re.compile("^Guest"))
    assert await names(page) == ["web2"]
    await page.go_back()
    await page.wait_for_url(base + "/guests?q=WEB&state=running&host=")
    await page.go_forward()
    await page.wait_for_url(re.compile(r"sort=name$"))

    # a bad argument in a URL: said under its field, the focus there, the rest listed
    await page.goto(base + "/guests?state=flying&sort=-expires")
    await expect(page.locator("#gl-state-error")).to_contain_text("state must be one of")
    await expect(page.locator("#gl-state")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#gl-state")).to_be_focused()
    assert await names(page) == ["db1", "web1"]  # the longest leases first: made last, for the same 3 days
    assert await serious(page) == []
    await shoot(page, "guest-lists-refused-desktop")

    # the other themes and pages: nothing serious for axe either
    for theme in ("dark", "light"):
        await page.emulate_media(color_scheme=theme)
        for path in ("/?sort=-expires", "/hosts?host=h1", "/guests?q=nothing"):
            await page.goto(base + path)
            assert await serious(page) == [], (theme, path)
    assert errors == []
    await ctx.close()


async def test_an_administrator_filters_by_owner_and_the_phone_width_wraps(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    ctx = await browser.new_context(viewport=WIDTHS["phone"], is_mobile=True, has_touch=True, bypass_csp=True,
                                    color_scheme="dark")
    page = await ctx.new_page()
    await log_in(page, base, "root")
    await page.goto(base + "/admin")
    await page.fill("#gl-owner", "dave")
    await page.click("form.list-filter button[type=submit]")
    await page.wait_for_url(re.compile(r"/admin\?.*owner=dave"))
    await expect(page.locator("#guests-count")).to_have_text(re.compile(r"^1\u20132 of 3 matching guests"))
    # at phone width the heads that sort are a row of links above the cards
    expires = page.locator("table.guests th a.sort", has_text="Expires")
    await expect(expires).to_be_visible()
    await expires.click()
    await page.wait_for_url(re.compile(r"sort=expires"))
    assert await names(page) == ["web2", "web1"]
    await expect(page.locator("tr.guest-row", has_text="web2").locator(".timeleft.soon")).to_be_visible()
    for path in ("/admin?owner=dave&sort=expires", "/hosts", "/guests", "/"):
        await page.goto(base + path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= WIDTHS["phone"]["width"], (path, width)
        assert await serious(page) == [], path
        await shoot(page, "guest-lists-" + (path.strip("/").split("?")[0] or "overview") + "-phone-dark")
    await ctx.close()
