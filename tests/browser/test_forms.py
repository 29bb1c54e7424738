"""Refused forms in Chromium: the message under the field at fault with the cursor on it, what was typed
kept (never a password), and after the correction Back loads the page by GET instead of asking to send the
form again ("Confirm Form Resubmission"). Each failed form's page passes axe-core.

Chromium asks to resend a form only when the history entry is the answer to a POST; these tests see that
as a dialog, or as a navigation that is not a plain GET of the page (a POST again, or the cache-miss error
page), and fail on either.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from fogmachine.db.models import Guest, User
from tests.browser.test_accessibility import axe_violations
from tests.browser.test_dashboard import WAIT_MS, log_in, open_server

pytestmark = pytest.mark.browser


@pytest.fixture
async def server(make_config, start_server, tmp_path):
    return await open_server(make_config, start_server, tmp_path, {"h1": {"cpus": 8, "memory_mb": 16384}})


async def open_page(browser: Any, width: int = 1280) -> tuple[Any, Any, list[str]]:
    """A page that fails its test on any dialog (a resubmission prompt, an unexpected confirm) or script error."""
    ctx = await browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = await ctx.new_page()
    trouble: list[str] = []

    async def dialog(d: Any) -> None:
        trouble.append(f"dialog: {d.type} {d.message}")
        await d.dismiss()

    page.on("dialog", dialog)
    page.on("pageerror", lambda exc: trouble.append(f"script error: {exc}"))
    return ctx, page, trouble


async def no_serious_violations(page: Any, what: str) -> None:
    """axe-core on the page as it is, in the light and the dark theme (the red of the messages differs)."""
    for theme in ("light", "dark"):
        await page.emulate_media(color_scheme=theme)
        found = [v for v in await axe_violations(page) if v["impact"] in ("serious", "critical")]
        assert not found, f"{what} ({theme}): " + "; ".join(f"{v['id']}: {v['nodes'][:3]}" for v in found)
    await page.emulate_media(color_scheme="light")


async def back_loads_by_get(page: Any, url: str) -> Any:
    """History back: a plain GET of ``url`` (after its redirects), never the POST again."""
    response = await page.go_back(wait_until="load")
    assert response is not None, "Back loaded nothing (the resubmission error page?)"
    first = response.request
    while first.redirected_from is not None:
        first = first.redirected_from
    assert first.method == "GET" and first.url == url, (first.method, first.url)
    return response


async def test_a_refused_checkout_then_corrected_and_back(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    ctx, page, trouble = await open_page(browser)
    await log_in(page, base, "dave")
    await page.goto(base + "/checkout")
    await page.check("input[name=target][value=tiny]")
    await page.fill("input[name=name]", "Web 1")
    await page.fill("input[name=days]", "3")
    await page.fill("input[name=purpose]", "the demo on Friday")
    await page.click("#checkout-form button[type=submit]")
    await page.wait_for_url(base + "/checkout")

    name = page.locator("input[name=name]")
    await expect(page.locator("#checkout-name-error")).to_contain_text("name must be a DNS label")
    await expect(name).to_be_focused()
    await expect(name).to_have_attribute("aria-invalid", "true")
    await expect(name).to_have_attribute("aria-describedby", "checkout-name-error")
    await expect(name).to_have_value("Web 1")
    await expect(page.locator("input[name=purpose]")).to_have_value("the demo on Friday")
    await expect(page.locator("input[name=target][value=tiny]")).to_be_checked()
    await expect(page.locator(".flash-error:not(.form-error)")).to_have_count(0)  # no banner far away
    await shoot(page, "checkout-refused-desktop")
    await no_serious_violations(page, "the refused checkout")

    await name.fill("web1")
    await page.click("#checkout-form button[type=submit]")
    await page.wait_for_url(base + "/guests")
    await expect(page.locator("tr.guest-row")).to_contain_text("web1")  # ("on its way" goes once it is ready)
    response = await back_loads_by_get(page, base + "/checkout")
    assert response.status == 200
    # the failure was shown once: the form as usual (Chromium may fill in what was last typed itself)
    await expect(page.locator("[aria-invalid=true]")).to_have_count(0)
    await expect(page.locator(".field-error")).to_have_count(0)
    assert await server.ctx.db.run(lambda s: s.scalar(select(func.count()).select_from(Guest))) == 1
    assert trouble == []
    await ctx.close()


async def test_no_room_is_said_at_the_top_of_the_checkout_form(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    ctx, page, trouble = await open_page(browser, 390)
    await log_in(page, base, "dave")
    await page.goto(base + "/checkout")
    await page.check("input[name=target][value=huge]")
    await page.fill("input[name=name]", "big1")
    await page.fill("input[name=purpose]", "load test")
    await page.click("#checkout-form button[type=submit]")
    await page.wait_for_url(base + "/checkout")
    said = page.locator("#checkout-error")
    await expect(said).to_contain_text("999999")
    await expect(said).to_be_focused()
    await expect(said).to_be_in_viewport()
    await expect(page.locator("input[name=name]")).to_have_value("big1")
    await shoot(page, "checkout-no-room-phone")
    await no_serious_violations(page, "the checkout refused for room")
    assert trouble == []
    await ctx.close()


async def test_a_refused_registration_then_corrected_and_back(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    ctx, page, trouble = await open_page(browser)
    await page.goto(base + "/register")
    await page.fill("input[name=username]", "carol")
    await page.fill("input[name=email]", "carol@example.org")
    await page.fill("input[name=password]", "carols password")
    await page.fill("input[name=confirm_password]", "carols pasword")
    await page.click("form.stack button[type=submit]")
    await page.wait_for_url(base + "/register")

    confirm = page.locator("input[name=confirm_password]")
    await expect(page.locator("#register-confirm_password-error")).to_have_text("the two passwords differ")
    await expect(confirm).to_be_focused()
    await expect(confirm).to_have_attribute("aria-invalid", "true")
    await expect(confirm).to_have_value("")
    await expect(page.locator("input[name=password]")).to_have_value("")  # passwords never come back
    await expect(page.locator("input[name=username]")).to_have_value("carol")
    await expect(page.locator("input[name=email]")).to_have_value("carol@example.org")
    assert "carols pas" not in await page.content()
    assert not [c for c in await ctx.cookies() if "carols" in c["value"]]
    await shoot(page, "register-refused-desktop")
    await no_serious_violations(page, "the refused registration")

    await page.fill("input[name=password]", "carols password")
    await page.fill("input[name=confirm_password]", "carols password")
    await page.click("form.stack button[type=submit]")
    await page.wait_for_url(base + "/")
    await expect(page.locator(".flash-ok")).to_have_text("Welcome, carol: your account is ready.")
    await back_loads_by_get(page, base + "/register")  # logged in now, it sends on to the overview
    assert await server.ctx.db.run(lambda s: s.scalar(select(User.email).where(User.username == "carol"))) \
        == "carol@example.org"
    assert trouble == []
    await ctx.close()


async def test_a_failed_login_keeps_its_401_and_back_still_loads_the_page(server, browser, shoot):
    """Answered in place (its status is what access logs count), but the page swaps its POST in the history
    for /login?next=..., so Back after the right password is a GET too."""
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    ctx, page, trouble = await open_page(browser)
    await page.goto(base + "/login?next=/hosts")
    await page.fill("input[name=username]", "dave")
    await page.fill("input[name=password]", "not his password")
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.click("form.stack button[type=submit]")
    assert (await answer.value).status == 401
    await expect(page.locator("#login-error")).to_have_text("wrong username or password")
    await expect(page).to_have_url(re.compile(re.escape(base + "/login?next=%2Fhosts") + "$"))
    await expect(page.locator("input[name=password]")).to_be_focused()
    await expect(page.locator("input[name=password]")).to_have_value("")
    await expect(page.locator("input[name=username]")).to_have_value("dave")
    await shoot(page, "login-refused-desktop")
    await no_serious_violations(page, "the refused login")

    await page.fill("input[name=password]", "correct horse battery")
    await page.click("form.stack button[type=submit]")
    await page.wait_for_url(base + "/hosts")
    await back_loads_by_get(page, base + "/login?next=%2Fhosts")
    await expect(page).to_have_url(base + "/hosts")  # logged in, the login page sends you on
    assert trouble == []
    await ctx.close()


async def test_the_other_refused_forms_pass_axe(server, browser, shoot):
    """The administrators' new user and the profile's forms, refused: each message under its field, focused,
    and the page without serious violations."""
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    ctx, page, trouble = await open_page(browser)
    await log_in(page, base, "root")
    await page.goto(base + "/admin")
    await page.locator("#users details.card summary").click()
    await page.fill("#users input[name=username]", "dave")
    await page.fill("#users input[name=password]", "longer than enough")
    await page.click("#users details.card button[type=submit]")
    await page.wait_for_url(base + "/admin")
    await expect(page.locator("#new-user-username-error")).to_have_text("user dave already exists")
    await expect(page.locator("#users input[name=username]")).to_be_focused()
    await shoot(page, "admin-new-user-refused-desktop")
    await no_serious_violations(page, "the refused new user")

    await page.goto(base + "/profile")
    await page.fill("textarea[name=ssh_key]", "my key")
    await page.click("form[action='/profile'] button[type=submit]")
    await page.wait_for_url(base + "/profile")
    await expect(page.locator("#profile-ssh_key-error")).to_contain_text("not an OpenSSH public key")
    await expect(page.locator("textarea[name=ssh_key]")).to_be_focused()
    await expect(page.locator("textarea[name=ssh_key]")).to_have_value("my key")
    await shoot(page, "profile-refused-desktop")
    await no_serious_violations(page, "the refused profile")
    assert trouble == []
    await ctx.close()
