"""Live updates in a real browser across a server restart: "reconnecting", then updates again without a
reload; toasts and the tab title's count for the user's own guests; the checkout's "is on its way" goes.

The server is stopped and a new one started on the same port, data directory and database, as a restart
of the service would: the page's login session is still good, so the page must not say it ended.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from fogmachine.app import Server
from fogmachine.db.models import Guest, utcnow
from fogmachine.services.users import create_user
from tests.browser.test_dashboard import log_in
from tests.web.pages.conftest import PASSWORD, password_hash, write_catalog

pytestmark = pytest.mark.browser
WAIT_MS = 20_000


def _booting(session, owner_id: int, name: str) -> int:
    """A guest of ``owner_id`` on its way (no host: nothing watches a domain for it)."""
    guest = Guest(name=name, live_name=name, owner_id=owner_id, target="tiny", target_kind="local", ram_mb=256,
                  vcpus=1, purpose="tests", state="running", step="booting",
                  expires_at=utcnow() + dt.timedelta(days=1))
    session.add(guest)
    session.flush()
    return guest.id


def _set(session, guest_id: int, **values: Any) -> None:
    guest = session.get(Guest, guest_id)
    for key, value in values.items():
        setattr(guest, key, value)


async def test_a_page_lives_through_a_restart_and_toasts_its_guests(make_config, browser, shoot, tmp_path):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    settings = {"hosts": {"h1": {"cpus": 8, "memory_mb": 16384}}, "local_catalog": write_catalog(tmp_path),
                "resync_interval": "86400"}
    first = Server(make_config(**settings))
    await first.start()
    servers = [first]
    try:
        dave = (await first.ctx.db.run(create_user, "dave", PASSWORD, password_hash=password_hash())).id
        base = f"http://127.0.0.1:{first.port}"
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await log_in(page, base, "dave")

        # the checkout's "is on its way" goes once the guest is ready (maybe before the page even loaded)
        await page.goto(base + "/checkout?target=tiny")
        await page.fill("input[name=name]", "web0")
        await page.fill("input[name=purpose]", "trying the toasts")
        await page.click("#checkout-form button[type=submit]")
        await page.wait_for_url(base + "/guests")
        await expect(page.locator("tr.guest-row", has_text="web0").locator("[data-field=step]")).to_have_text("ready")
        await expect(page.locator(".flash", has_text="web0 is on its way")).to_have_count(0)
        for close in await page.locator(".toast-close").all():  # "web0 is ready", if the page saw it get there
            await close.click()
        await expect(page.locator(".toast")).to_have_count(0)

        status = page.locator("#live-status")
        await expect(status).to_have_text("● live")
        await page.evaluate("window.neverReloaded = true")

        # a restart: 1001, "reconnecting…", then a new server on the same port, and the page listens again
        await first.stop()
        servers.remove(first)
        await expect(status).to_have_text("○ reconnecting…")
        await shoot(page, "live-reconnecting")
        second = Server(make_config(**settings, listen_port=str(first.port)))
        await second.start()
        servers.append(second)
        await expect(status).to_have_text("● live")
        assert "session ended" not in await status.inner_text()

        # updates resume without a reload: a guest on its way appears, then gets ready while the tab is
        # in the background (another tab in front, and no focus emulation: the page is not looked at)
        web1 = await second.ctx.db.run(_booting, dave, "web1")
        row = page.locator("tr.guest-row", has_text="web1")
        await expect(row.locator("[data-field=step]")).to_have_text("booting")
        cdp = await context.new_cdp_session(page)
        await cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
        other = await context.new_page()
        await other.bring_to_front()
        assert await page.evaluate("document.hasFocus()") is False
        await second.ctx.db.run(_set, web1, step="ready", ip="10.0.0.5")
        toast = page.locator(".toast", has_text="web1 is ready")
        await expect(toast).to_contain_text("web1 is ready: ssh dave@10.0.0.5")
        await expect(page.locator("#toasts")).to_have_attribute("aria-live", "polite")
        await expect(page).to_have_title("(1) My reservations · Fogmachine")
        web2 = await second.ctx.db.run(_booting, dave, "web2")
        await expect(page.locator("tr.guest-row", has_text="web2").locator("[data-field=step]")).to_have_text(
            "booting")
        await second.ctx.db.run(_set, web2, step="failed", step_reason="no room on h1")
        await expect(page.locator(".toast-error .toast-text")).to_have_text("web2 failed: no room on h1")
        await expect(page).to_have_title("(2) My reservations · Fogmachine")
        await shoot(page, "live-toasts")

        # looking at the tab again clears the count; the toasts stay until dismissed
        await page.bring_to_front()
        await expect(page).to_have_title("My reservations · Fogmachine")
        await page.locator(".toast-error .toast-close").click()
        await expect(page.locator(".toast")).to_have_count(1)
        assert await page.evaluate("window.neverReloaded") is True
        assert errors == []
        await context.close()
    finally:
        for server in servers:
            await server.stop()


async def test_a_session_that_ended_says_so_and_only_then(make_config, browser, tmp_path):
    """Ended while the page listens: 4001, "session ended: log in". Ended while the server was down: the
    reconnect is refused, the page asks /live whether the session holds (401) and says the same."""
    from playwright.async_api import expect

    from fogmachine.db.session import Database
    from fogmachine.services import sessions

    expect.set_options(timeout=WAIT_MS)
    settings = {"local_catalog": write_catalog(tmp_path), "resync_interval": "86400"}
    server = Server(make_config(**settings))
    await server.start()
    servers = [server]
    try:
        dave = (await server.ctx.db.run(create_user, "dave", PASSWORD, password_hash=password_hash())).id
        base = f"http://127.0.0.1:{server.port}"
        context = await browser.new_context()
        page, other = await context.new_page(), await context.new_page()
        await log_in(page, base, "dave")
        await page.goto(base + "/guests")
        status = page.locator("#live-status")
        await expect(status).to_have_text("● live")
        await other.goto(base + "/guests")
        await other.click("header.top button:has-text('Log out')")  # the same session, from another tab
        await expect(status).to_have_text("session ended: log in")
        await expect(status.locator("a")).to_have_attribute("href", "/login")

        await log_in(page, base, "dave")
        await page.goto(base + "/guests")
        await expect(status).to_have_text("● live")
        await server.stop()
        servers.remove(server)
        await expect(status).to_have_text("○ reconnecting…")
        config = make_config(**settings, listen_port=str(server.port))
        db = Database(config.database_url, threads=1)
        try:
            db.run_sync(sessions.end_for_user, dave, "tests: ended while the server was down")
        finally:
            db.dispose()
        again = Server(config)
        await again.start()
        servers.append(again)
        await expect(status).to_have_text("session ended: log in")
        await context.close()
    finally:
        for running in servers:
            await running.stop()


async def test_a_row_fetched_late_shows_what_happened_while_it_was_on_its_way(make_config, browser, tmp_path):
    """A guest the page has no row for makes it fetch one; if the guest gets ready while that fetch is on
    its way, the "ready" message has no row to land on, and the row that arrives says "booting". The page
    must put the newest word it heard on the row, not the one that asked for it (CI saw "booting" for good)."""
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    server = Server(make_config(local_catalog=write_catalog(tmp_path), resync_interval="86400"))
    await server.start()
    try:
        dave = (await server.ctx.db.run(create_user, "dave", PASSWORD, password_hash=password_hash())).id
        base = f"http://127.0.0.1:{server.port}"
        context = await browser.new_context()
        page = await context.new_page()
        await log_in(page, base, "dave")
        await page.goto(base + "/guests")
        await expect(page.locator("#live-status")).to_have_text("● live")

        fetched, release = asyncio.Event(), asyncio.Event()

        async def hold_the_row(route: Any) -> None:
            answer = await route.fetch()  # rendered now, while the guest is booting
            fetched.set()
            await release.wait()
            await route.fulfill(response=answer)

        await page.route("**/guests/*/row*", hold_the_row)
        await page.evaluate("""() => document.addEventListener("fm:live", e => {
            if ((e.detail.guests || []).some(g => g.step === "ready")) { document.body.dataset.sawReady = "yes"; }
        })""")
        web1 = await server.ctx.db.run(_booting, dave, "web1")
        await asyncio.wait_for(fetched.wait(), WAIT_MS / 1000)
        await server.ctx.db.run(_set, web1, step="ready", ip="10.0.0.7")
        # A DOM mark, not wait_for_function: its polling evaluates a string, which the page's CSP refuses.
        await expect(page.locator("body")).to_have_attribute("data-saw-ready", "yes")
        assert await page.locator("tr.guest-row", has_text="web1").count() == 0  # the row is still on its way
        release.set()
        row = page.locator("tr.guest-row", has_text="web1")
        await expect(row.locator("[data-field=step]")).to_have_text("ready")
        await expect(row.locator("[data-field=ip]")).to_have_text("10.0.0.7")
        await context.close()
    finally:
        await server.stop()
