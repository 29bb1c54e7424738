"""The audit log and the reservations' history in a real browser against a real server.

An administrator disables a host, opens the audit log from the menu and finds
that very action on top; filters it by the action's family and gets back the
unfiltered log with a message for a date that is not one. A user whose guest
was retired finds it under History without buttons. Both pages fit a phone.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from fogmachine.db.models import Guest, Step
from fogmachine.services import expiry
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import CheckoutRequest, checkout
from fogmachine.services.users import create_user
from tests.browser.test_dashboard import WAIT_MS, log_in
from tests.web.pages.conftest import PASSWORD, password_hash, write_catalog

pytestmark = pytest.mark.browser


@pytest.fixture
async def server(make_config, start_server, tmp_path):
    config = make_config(hosts={"h1": {"cpus": 8, "memory_mb": 16384}, "h2": {"cpus": 4, "memory_mb": 8192}},
                         local_catalog=write_catalog(tmp_path))
    srv = await start_server(config)
    users = {}
    for name, admin in (("root", True), ("erin", False)):
        user = await srv.ctx.db.run(create_user, name, PASSWORD, is_admin=admin, password_hash=password_hash())
        users[name] = user.id
    srv.users = users
    return srv


async def ready(server, guest_id: int) -> None:
    """Wait until provisioning has finished, as a guest that has lived its reservation would have."""
    for _ in range(400):
        step = await server.ctx.db.run(lambda s: s.get(Guest, guest_id).step)
        if step in (Step.READY, Step.FAILED):
            assert step == Step.READY
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"guest {guest_id} never got ready")


async def test_admin_reads_the_action_just_done(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, base, "root")
    await page.goto(base + "/admin")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.locator("tr[data-host=h2] button", has_text="Disable").click()
    await expect(page.locator(".flash-ok")).to_contain_text("h2 is disabled for maintenance")

    await page.click("header.top nav a:has-text('Audit log')")
    await page.wait_for_url(base + "/admin/audit")
    newest = page.locator("table.audit tbody tr").first
    await expect(newest.locator("td[data-label=Action]")).to_have_text("host.disable")
    await expect(newest.locator("td[data-label=Object]")).to_contain_text("h2")
    await expect(newest.locator("td[data-label=Who]")).to_have_text("root")
    await expect(newest.locator("td[data-label=Result]")).to_have_text("ok")
    await expect(newest.locator("td[data-label=From]")).to_have_text("127.0.0.1")
    await expect(page.locator("table.audit")).to_contain_text("user.login")
    await shoot(page, "audit")

    await page.fill("#audit-filter input[name=action]", "host")
    await page.click("#audit-filter button[type=submit]")
    await page.wait_for_url(re.compile(r"/admin/audit\?.*action=host"))
    await expect(page.locator("table.audit tbody tr")).to_have_count(1)
    await expect(page.locator(".audit-count")).to_contain_text("1 event match")
    await expect(page.locator("#audit-filter input[name=action]")).to_have_value("host")

    await page.goto(base + "/admin/audit?since=last+week")
    await expect(page.locator("#audit-since-error")).to_contain_text("since must be a date")
    await expect(page.locator("#audit-filter input[name=since]")).to_be_focused()
    await expect(page.locator("table.audit")).to_contain_text("host.disable")
    await shoot(page, "audit-bad-filter")
    assert errors == []
    await ctx.close()


async def test_history_and_phone_width(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    erin = Actor(user_id=server.users["erin"], username="erin")
    guest = await checkout(server.ctx, erin, CheckoutRequest("old1", "tiny", 2, "last week's demo"))
    await ready(server, guest.id)
    assert await expiry.retire(server.ctx, Actor.system("expiry"), guest.id)
    await checkout(server.ctx, erin, CheckoutRequest("new1", "tiny", 2, "this week's demo"))

    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = await ctx.new_page()
    await log_in(page, base, "erin")
    await page.goto(base + "/guests")
    history = page.locator("#history")
    await expect(history.locator(f"tr[data-retired-id='{guest.id}']")).to_contain_text("old1")
    await expect(history).to_contain_text("last week's demo")
    await expect(history).to_contain_text("reservation expired")
    assert await history.locator("form, button").count() == 0
    await expect(page.locator("tr.guest-row", has_text="new1").locator("[data-field=step]")).to_have_text(
        Step.READY)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await shoot(page, "phone-reservations-history")

    admin_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    admin = await admin_ctx.new_page()
    await log_in(admin, base, "root")
    for path in ("/admin/audit", "/admin?guests=retired"):
        await admin.goto(base + path)
        await expect(admin.locator("main")).to_contain_text("old1")
        assert await admin.evaluate("document.documentElement.scrollWidth") <= 390, path
    await shoot(admin, "phone-admin-retired")
    await admin.goto(base + "/admin/audit")
    await shoot(admin, "phone-audit")
    for c in (ctx, admin_ctx):
        await c.close()
