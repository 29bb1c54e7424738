"""The guest page in Chromium, at desktop and phone width: its ssh line, a refused extend that takes the
focus, and the list rows' "More" menu, which opens and closes by keyboard alone."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import delete, select

from fogmachine.db.models import Guest, GuestStep, Step, User
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import CheckoutRequest, checkout
from tests.browser.test_dashboard import WAIT_MS, log_in, open_server, row

pytestmark = pytest.mark.browser


@pytest.fixture
async def server(make_config, start_server, tmp_path):
    return await open_server(make_config, start_server, tmp_path, {"h1": {"cpus": 8, "memory_mb": 16384}})


async def ready_guest(server: Any, owner: str, name: str) -> int:
    """Checked out through the real service on the test driver; its address set as its phone-home would."""
    ctx = server.ctx
    user_id = await ctx.db.run(lambda s: s.scalar(select(User.id).where(User.username == owner)))
    guest = await checkout(ctx, Actor(user_id, owner), CheckoutRequest(name, "tiny", 3, "browser test"))
    for _ in range(400):
        if (await ctx.db.run(lambda s: s.get(Guest, guest.id).step)) == Step.READY:
            break
        await ctx.provisioner.wait(guest.id)

    def address(session: Any) -> None:
        session.get(Guest, guest.id).ip = "192.0.2.44"

    await ctx.db.run(address)
    return guest.id


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
async def test_the_guest_page(server, browser, shoot, width):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    gid = await ready_guest(server, "dave", "web1")
    phone = width < 760
    context = await browser.new_context(viewport={"width": width, "height": 900}, is_mobile=phone, has_touch=phone)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, server.base_url, "dave")

    # from the list, by the guest's name
    await page.goto(server.base_url + "/guests")
    await (await row(page, "web1")).locator("a.guest-link").click()
    await page.wait_for_url(f"{server.base_url}/guests/{gid}")
    await expect(page.locator("#status-sentence")).to_have_text("Ready and running")
    await expect(page.locator("#ssh-line")).to_have_text("ssh dave@192.0.2.44")
    await expect(page.locator("button[data-copy=ssh-line]")).to_be_visible()  # 127.0.0.1 is a secure context
    await expect(page.locator("#steps")).to_contain_text("booting")
    await expect(page.locator("#timeline")).to_contain_text("guest.checkout")
    await expect(page.locator("#console")).to_contain_text("keeps no serial console logs")
    width_used = await page.evaluate("document.documentElement.scrollWidth")
    assert width_used <= width, width_used
    await shoot(page, f"guest-page-{'phone' if phone else 'desktop'}")

    # a refused number: back under its field, what was typed kept, and the cursor there
    await page.fill("#extend-days", "45")
    await page.locator("form.extend button").click()
    await page.wait_for_url(f"{server.base_url}/guests/{gid}")
    await expect(page.locator(f"#extend-{gid}-days-error")).to_have_text("web1: days must be between 1 and 30")
    await expect(page.locator("#extend-days")).to_have_value("45")
    await expect(page.locator("#extend-days")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#extend-days")).to_be_focused()
    await shoot(page, f"guest-page-refused-{'phone' if phone else 'desktop'}")

    # the row's "More" menu, by keyboard alone
    await page.goto(server.base_url + "/guests")
    more = (await row(page, "web1")).locator("details.more")
    await expect(more.locator("form[data-action=destroy]")).to_be_hidden()
    await more.locator("summary").focus()
    await page.keyboard.press("Enter")
    await expect(more).to_have_attribute("open", "")
    await expect(more.locator("form[data-action=destroy] button")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(more.locator("form[data-action=restart] button")).to_be_focused()
    await shoot(page, f"guest-row-more-{'phone' if phone else 'desktop'}")
    await page.keyboard.press("Escape")
    await expect(more).not_to_have_attribute("open", re.compile(".*"))
    await expect(more.locator("summary")).to_be_focused()
    assert errors == []
    await context.close()


async def test_the_open_page_follows_its_guest_without_a_reload(server, browser, shoot):
    """The page stays open while the guest changes behind its back: paused through the API (another client,
    a bearer token), a reason written by another unit of work, the lease extended and the guest deleted
    through the API. The sentence, the reason, the buttons, the lease and the steps follow, and nothing
    reloads; the deleted guest's page says so and offers nothing more to do."""
    from playwright.async_api import expect

    from fogmachine.services import tokens

    expect.set_options(timeout=WAIT_MS)
    gid = await ready_guest(server, "dave", "web1")
    dave = await server.ctx.db.run(lambda s: s.scalar(select(User.id).where(User.username == "dave")))
    _, token = await server.ctx.db.run(tokens.create_token, Actor(dave, "dave"), tokens.NewToken("test", "write", 1))
    api = {"Authorization": f"Bearer {token}"}
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, server.base_url, "dave")
    await page.goto(f"{server.base_url}/guests/{gid}")
    sentence, reason = page.locator("#status-sentence"), page.locator("#status-reason")
    actions = page.locator("#actions")
    await expect(page.locator("#live-status")).to_have_text("● live")
    await expect(sentence).to_have_text("Ready and running")
    await expect(reason).to_be_hidden()
    await expect(actions.locator("form[data-action=unpause]")).to_be_hidden()
    await page.evaluate("window.neverReloaded = true")

    answer = await server.fetch(f"/api/v1/guests/{gid}/pause", method="POST", headers=api)
    assert answer.code == 200, answer.body
    await expect(sentence).to_have_text("Ready, paused: unpause it to go on")
    await expect(page.locator("[data-page=state]")).to_have_text("paused")
    await expect(actions.locator("form[data-action=unpause]")).to_be_visible()
    await expect(actions.locator("form[data-action=pause]")).to_be_hidden()

    warning = "still boots from the network: the switch to its disk is retried"
    await server.ctx.db.run(lambda s: setattr(s.get(Guest, gid), "step_reason", warning))
    await expect(reason).to_have_text(f"Reason: {warning}")
    await expect(reason).to_be_visible()

    answer = await server.fetch(f"/api/v1/guests/{gid}/extend", method="POST", body={"days": 2}, headers=api)
    assert answer.code == 200, answer.body
    await expect(page.locator("#lease .timeleft")).to_have_text(re.compile(r"^(4 d|5 d)"))
    await shoot(page, "guest-page-live-paused")

    answer = await server.fetch(f"/api/v1/guests/{gid}", method="DELETE", headers=api)
    assert answer.code in (200, 202, 204), answer.body
    await expect(sentence).to_have_text("Retired: deleted by dave")
    await expect(reason).to_be_hidden()  # the sentence says it
    await expect(page.locator("#steps-body tr").last).to_contain_text("deleted by dave")
    await expect(page.locator("#lease-term")).to_have_text("Retired")
    await expect(actions).to_be_hidden()
    await expect(page.locator("#consoles-card")).to_be_hidden()
    await shoot(page, "guest-page-live-retired")
    assert await page.evaluate("window.neverReloaded") is True

    # a guest whose row is deleted outright while its page is open (no retirement to show): the page says so
    other = await ready_guest(server, "dave", "web2")
    await page.goto(f"{server.base_url}/guests/{other}")
    await expect(page.locator("#live-status")).to_have_text("● live")
    await expect(actions).to_be_visible()
    await page.evaluate("window.neverReloaded = true")

    def remove(session: Any) -> None:
        session.execute(delete(GuestStep).where(GuestStep.guest_id == other))
        session.execute(delete(Guest).where(Guest.id == other))

    await server.ctx.db.run(remove)
    await expect(sentence).to_have_text("Deleted: this guest is no longer in Fogmachine")
    await expect(actions).to_be_hidden()
    assert await page.evaluate("window.neverReloaded") is True
    assert errors == []
    await context.close()
