"""The dashboard in a real browser against a real server on test-driver hosts.

One story, as a user lives it: register, log in, check a guest out and watch it
appear and get ready on a page that is never reloaded, see it paused behind the
page's back (through libvirt, on the server's own connection to the host),
unpause, extend and delete it; an administrator sees it on the admin page and
watches it vanish; another user neither sees its buttons nor can post them.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from sqlalchemy import select

from fogmachine.db.models import Guest
from fogmachine.services.users import create_user
from tests.support import testhosts
from tests.support.tcpproxy import TcpProxy
from tests.web.pages.conftest import PASSWORD, password_hash, write_catalog

pytestmark = pytest.mark.browser
WAIT_MS = 15_000


async def row(page: Any, name: str) -> Any:
    return page.locator("tr.guest-row", has=page.locator("td.name strong", has_text=re.compile(f"^{name}$")))


async def log_in(page: Any, base: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(base + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("form.stack button[type=submit]")
    await page.wait_for_url(base + "/")


@pytest.fixture
async def server(make_config, start_server, tmp_path):
    return await open_server(make_config, start_server, tmp_path,
                             {"h1": {"cpus": 8, "memory_mb": 16384}, "h2": {"cpus": 4, "memory_mb": 8192}})


async def open_server(make_config, start_server, tmp_path, hosts: dict[str, Any]) -> Any:
    """The ``server`` fixture on ``hosts`` (make_config's: test-driver kwargs or URIs), with root and dave."""
    config = make_config(hosts=hosts, local_catalog=write_catalog(tmp_path))
    srv = await start_server(config)
    for name, admin in (("root", True), ("dave", False)):  # as `fogmachine user add [--admin]` would
        await srv.ctx.db.run(create_user, name, PASSWORD, is_admin=admin, password_hash=password_hash())
    return srv


async def test_the_whole_story(server, browser, shoot):
    from playwright.async_api import expect

    base = server.base_url
    expect.set_options(timeout=WAIT_MS)
    carol_ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await carol_ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # register, then log out and in again
    await page.goto(base + "/register")
    await shoot(page, "register")
    await page.fill("input[name=username]", "carol")
    await page.fill("input[name=email]", "carol@example.org")
    await page.fill("input[name=password]", "carols password")
    await page.fill("input[name=confirm_password]", "carols password")
    await page.click("form.stack button[type=submit]")
    await page.wait_for_url(base + "/")
    await expect(page.locator(".flash-ok")).to_have_text("Welcome, carol: your account is ready.")
    await page.click("header.top button:has-text('Log out')")
    await page.wait_for_url(base + "/login")
    await expect(page.locator(".flash-ok")).to_have_text("You are logged out.")
    await shoot(page, "login")
    await log_in(page, base, "carol", "carols password")
    await expect(page.locator(".live-status")).to_have_text(re.compile("live"))
    await shoot(page, "overview")

    # a second tab on "my reservations", never reloaded: the guest must appear there by itself
    watcher = await carol_ctx.new_page()
    await watcher.goto(base + "/guests")
    await expect(watcher.locator("#no-guests")).to_be_visible()
    await expect(watcher.locator(".live-status")).to_have_text(re.compile("live"))
    await watcher.evaluate("window.neverReloaded = true")

    # check out: the preview names a host before the form is sent
    await page.goto(base + "/checkout")
    await page.check("input[name=target][value=tiny]")
    await expect(page.locator("#preview")).to_contain_text("would take it")
    await page.check("input[name=target][value=huge]")
    await expect(page.locator("#preview")).to_have_attribute("data-state", "no")
    await page.check("input[name=target][value=tiny]")
    await expect(page.locator("#preview")).to_have_attribute("data-state", "ok")
    await page.fill("input[name=name]", "web1")
    await page.fill("input[name=days]", "3")
    await page.fill("input[name=purpose]", "trying Fogmachine")
    await shoot(page, "checkout")
    async with page.expect_response(base + "/guests") as landed:
        await page.click("#checkout-form button[type=submit]")
    assert "web1 is on its way" in await (await landed.value).text()
    await page.wait_for_url(base + "/guests")
    # live.js takes the notice down once web1 is ready (test_live_updates.py)
    await expect(page.locator(".flash-ok", has_text="web1 is on its way")).to_have_count(0)

    web1 = await row(watcher, "web1")
    await expect(web1).to_be_visible()
    await expect(web1.locator("[data-field=step]")).to_have_text("ready")
    await expect(web1.locator("[data-field=state]")).to_have_text("running")
    assert await watcher.evaluate("window.neverReloaded") is True
    await shoot(watcher, "reservations")

    # paused behind the page's back: libvirt, on the server's own connection to the host
    guest = await server.ctx.db.run(lambda s: s.scalar(select(Guest).where(Guest.name == "web1")))
    host_name = await server.ctx.db.run(lambda s: s.get(Guest, guest.id).host.name)
    mine = await row(page, "web1")
    await expect(mine.locator("[data-field=state]")).to_have_text("running")
    await page.evaluate("window.neverReloaded = true")
    await server.ctx.hosts.get(host_name).suspend(guest.domain_name)
    await expect(mine.locator("[data-field=state]")).to_have_text("paused")
    await expect(mine.locator("form[data-action=unpause]")).to_be_visible()
    await expect(mine.locator("form[data-action=pause]")).to_be_hidden()
    await expect(web1.locator("[data-field=state]")).to_have_text("paused")
    assert await page.evaluate("window.neverReloaded") is True
    await shoot(page, "reservations-paused")

    # unpause and extend with the buttons
    await mine.locator("form[data-action=unpause] button").click()
    await expect(page.locator(".flash-ok")).to_have_text("web1: running again.")
    mine = await row(page, "web1")
    await expect(mine.locator("[data-field=state]")).to_have_text("running")
    await mine.locator("details.more summary").click()  # extend, and all but the row's primary action, are there
    await mine.locator("form[data-action=extend] input[name=days]").fill("2")
    await mine.locator("form[data-action=extend] button").click()
    await expect(page.locator(".flash-ok")).to_contain_text("web1: extended by 2 day(s)")
    await expect((await row(page, "web1")).locator(".timeleft")).to_have_text(re.compile(r"^(4 d|5 d)"))

    # an administrator sees carol's guest with its owner, on the admin page and the hosts page
    admin_ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    admin = await admin_ctx.new_page()
    await log_in(admin, base, "root")
    await admin.goto(base + "/admin")
    admin_row = await row(admin, "web1")
    await expect(admin_row).to_contain_text("carol")
    await expect(admin.locator(".live-status")).to_have_text(re.compile("live"))
    await shoot(admin, "admin")
    hosts_tab = await admin_ctx.new_page()
    await hosts_tab.goto(base + "/hosts")
    await expect(hosts_tab.locator(f"[data-host={host_name}]").first).to_contain_text("guest(s)")
    await expect(hosts_tab.locator("tr[data-guest-id]", has_text="web1")).to_contain_text("carol")
    await shoot(hosts_tab, "hosts")

    # host maintenance, seen live on carol's overview (no reload): the state and the cloud's totals
    home = await carol_ctx.new_page()
    await home.goto(base + "/")
    await expect(home.locator(".live-status")).to_have_text(re.compile("live"))
    await expect(home.locator("[data-stat=hosts]")).to_have_text("2 / 2")
    await home.evaluate("window.neverReloaded = true")
    admin.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await admin.locator("tr[data-host=h2] button", has_text="Disable").click()
    await expect(admin.locator(".flash-ok")).to_contain_text("h2 is disabled for maintenance")
    await expect(home.locator("[data-host=h2] [data-field=display_state]")).to_have_text("disabled")
    await expect(home.locator("[data-stat=hosts]")).to_have_text("1 / 2")
    await shoot(home, "overview-host-disabled")
    await admin.locator("tr[data-host=h2] button", has_text="Enable").click()
    await expect(home.locator("[data-host=h2] [data-field=display_state]")).to_have_text("up")
    assert await home.evaluate("window.neverReloaded") is True
    await home.close()

    # another user: no row, no buttons, and posting the action anyway is refused
    dave_ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    dave = await dave_ctx.new_page()
    await log_in(dave, base, "dave")
    await dave.goto(base + "/guests")
    await expect(dave.locator("#no-guests")).to_be_visible()
    assert await dave.locator(f"[data-guest-id='{guest.id}']").count() == 0
    assert await dave.locator(f"form[action^='/guests/{guest.id}/']").count() == 0
    status = await dave.evaluate("""async (id) => {
        const token = document.querySelector("input[name=_xsrf]").value;
        const body = new URLSearchParams({_xsrf: token});
        const r = await fetch(`/guests/${id}/pause`, {method: "POST", body, redirect: "manual"});
        return r.status;
    }""", guest.id)
    assert status == 404
    state = await server.ctx.db.run(lambda s: s.get(Guest, guest.id).state)
    assert state == "running"

    # delete, confirming the question; the admin's open page loses the row by itself
    await admin.evaluate("window.neverReloaded = true")
    questions: list[str] = []

    async def answer(dialog: Any) -> None:
        questions.append(dialog.message)
        await dialog.accept()

    page.on("dialog", answer)
    await (await row(page, "web1")).locator("details.more summary").click()
    await (await row(page, "web1")).locator("form[data-action=delete] button").click()
    await expect(page.locator(".flash-ok")).to_have_text("web1: deleted.")
    assert questions and questions[0].startswith("Delete web1?")
    await expect(await row(page, "web1")).to_have_count(0)
    await expect(await row(admin, "web1")).to_have_count(0)
    await expect(await row(watcher, "web1")).to_have_count(0)
    assert await admin.evaluate("window.neverReloaded") is True
    assert await server.ctx.db.run(lambda s: s.get(Guest, guest.id).step) == "retired"  # kept as history
    await expect(page.locator(f'tr.retired-row[data-retired-id="{guest.id}"]')).to_contain_text("deleted by")

    await page.goto(base + "/profile")
    await shoot(page, "profile")
    await page.goto(base + "/no/such/page")
    await expect(page.locator("h1")).to_have_text("Not found")
    await shoot(page, "404")
    assert errors == []
    for ctx in (carol_ctx, admin_ctx, dave_ctx):
        await ctx.close()


async def test_phone_width(server, browser, shoot):
    """At phone width the menu folds away and tables become cards; nothing overflows sideways."""
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = await ctx.new_page()
    await log_in(page, server.base_url, "dave")
    await expect(page.locator("header.top nav")).to_be_hidden()
    await page.click("button.nav-button")
    await expect(page.locator("header.top nav a[href='/checkout']")).to_be_visible()
    await page.goto(server.base_url + "/checkout")
    await page.check("input[name=target][value=tiny]")
    await page.fill("input[name=name]", "phone1")
    await page.fill("input[name=purpose]", "on the train")
    await page.click("#checkout-form button[type=submit]")
    await page.wait_for_url(server.base_url + "/guests")
    await expect((await row(page, "phone1")).locator("[data-field=step]")).to_have_text("ready")
    for path in ("/guests", "/checkout", "/"):
        await page.goto(server.base_url + path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
        await shoot(page, "phone" + (path.replace("/", "-") if path != "/" else "-overview"))
    await ctx.close()


async def test_the_checkout_preview_is_the_apis_and_says_its_refusals(server, browser, shoot):
    """The page's preview asks the API's placement endpoint with the session alone; when the API refuses
    (a profile gone from the catalog since the page was drawn: 400; a session ended: 401), the page says
    so under the profiles instead of failing silently."""
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/placement" in request.url else None)
    await log_in(page, server.base_url, "dave")
    await page.goto(server.base_url + "/checkout")
    preview, profiles = page.locator("#preview"), page.locator("fieldset.catalog")

    await page.check("input[name=target][value=tiny]")
    await expect(preview).to_have_attribute("data-state", "ok")
    await expect(preview).to_contain_text("would take it")
    await expect(preview.locator(".preview-hosts li")).to_have_count(2)
    assert asked == [server.base_url + "/api/v1/catalog/placement?target=tiny"]

    # a profile the catalog no longer has: the API's 400, its message under the profiles
    await page.evaluate("document.querySelector('input[name=target][value=huge]').value = 'gone'")
    await page.check("input[name=target][value=gone]")
    await expect(preview).to_have_attribute("data-state", "no")
    await expect(preview).to_contain_text("unknown")
    await expect(profiles).to_have_class(re.compile(r"\binvalid\b"))
    await shoot(page, "checkout-preview-refused")
    await page.check("input[name=target][value=tiny]")
    await expect(preview).to_contain_text("would take it")
    await expect(profiles).not_to_have_class(re.compile(r"\binvalid\b"))

    # the session ended behind the page's back: the API's 401, and the page says to log in again
    await ctx.clear_cookies()
    await page.check("input[name=target][value=gone]")
    await expect(preview).to_contain_text("log in again")
    await expect(preview).to_have_attribute("data-state", "no")
    assert errors == []
    await ctx.close()


async def test_an_administrator_deletes_anyway_a_guest_whose_host_died(make_config, start_server, tmp_path, browser,
                                                                      shoot, real_hosts):
    """The row's Delete meets a host that does not answer: the page says why and offers to delete anyway.
    The host is a test-driver host served by the real libvirtd on 127.0.0.1 through a TCP forwarder; cutting
    it is a real fault (connections reset, reconnects refused) for this test alone."""
    path = testhosts.write_host(tmp_path / "served", "h1", cpus=8, memory_mb=16384)[len("test://"):]
    with TcpProxy(("127.0.0.1", 16509)) as proxy:
        server = await open_server(make_config, start_server, tmp_path,
                                   {"h1": f"test+tcp://127.0.0.1:{proxy.port}{path}"})
        await delete_anyway_after_the_cut(server, proxy, browser, shoot)


async def delete_anyway_after_the_cut(server: Any, proxy: TcpProxy, browser: Any, shoot: Any) -> None:
    from playwright.async_api import expect

    from fogmachine.db.models import Step, User
    from fogmachine.services.actor import Actor
    from fogmachine.services.checkout import CheckoutRequest, checkout

    expect.set_options(timeout=WAIT_MS)
    ctx = server.ctx
    root_id = await ctx.db.run(lambda s: s.scalar(select(User.id).where(User.username == "root")))
    guest = await checkout(ctx, Actor(root_id, "root", True), CheckoutRequest("doomed", "tiny", 1, "host dies"))
    for _ in range(400):
        row_now = await ctx.db.run(lambda s: s.get(Guest, guest.id))
        if row_now.step == Step.READY:
            break
        await asyncio.sleep(0.05)
    host = await ctx.db.run(lambda s: s.get(Guest, guest.id).host.name)
    proxy.cut()  # the host dies and does not come back during the test
    conn = ctx.hosts.get(host)
    for _ in range(600):
        if not conn.connected:
            break
        await asyncio.sleep(0.05)
    assert not conn.connected

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await log_in(page, server.base_url, "root")
    await page.goto(server.base_url + "/guests")
    await (await row(page, "doomed")).locator("details.more summary").click()
    await (await row(page, "doomed")).locator("form[data-action=delete] button").click()
    await expect(page.locator("p.flash-error")).to_contain_text(f"host {host}")
    await expect(page.locator("text=Nothing was deleted")).to_be_visible()
    await shoot(page, "delete-anyway")
    await page.click("button:has-text('Delete doomed anyway')")
    await expect(page.locator(".flash-ok")).to_contain_text("doomed: deleted; whatever is left on its host")
    await expect(await row(page, "doomed")).to_have_count(0)
    assert (await ctx.db.run(lambda s: s.get(Guest, guest.id).step)) == Step.RETIRED
    await context.close()
