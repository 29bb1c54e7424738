"""Every page through axe-core, as an administrator, a user and a visitor, at desktop and phone width, light
and dark: no serious or critical violation, and headings in order. Each page is also saved as a screenshot
(the ``shoot`` fixture's folder), so a person can look at them all at once.

axe-core is pinned in static/vendor/manifest.json as a test-only package, which static/vendor/update.py copies
into tests/browser/vendor/axe-core/ (see its VERSION), outside static/: the test injects it into the page and the
server never serves it (the browser context bypasses the pages' CSP for that one script).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from fogmachine.db.models import Environment
from fogmachine.services import tokens, useradmin
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import CheckoutRequest, checkout
from fogmachine.services.environments import templates
from fogmachine.services.environments.claim import EnvironmentRequest, checkout_environment
from fogmachine.services.users import create_user
from tests.browser.test_audit import ready
from tests.browser.test_dashboard import WAIT_MS, log_in
from tests.web.pages.conftest import PASSWORD, password_hash, write_catalog

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
THEMES = ("light", "dark")
# Rules that fail a page whatever impact axe gives them: the issue asks for headings in order.
ALWAYS = {"heading-order", "page-has-heading-one"}
PAGES = {
    "visitor": ("/", "/login", "/register", "/no-such-page"),
    # /guests/1 is dave's guest (made first below); /guests/1/destroy asks before powering it off.
    # /environments/1 is dave's environment of the shared template db-web (its guests are 3 to 5).
    "user": ("/", "/checkout", "/guests", "/guests/1", "/guests/1/destroy", "/guests/1/console", "/profile",
             "/hosts", "/api/v1/docs", "/no-such-page", "/admin", "/environments", "/environments/new",
             "/environments/1", "/environments/1/delete", "/environment-templates"),
    "admin": ("/", "/checkout", "/guests", "/guests/1", "/guests/2", "/profile", "/hosts", "/admin",
              "/admin?guests=retired",
              "/admin/audit", "/admin/audit?since=nonsense", "/api/v1/docs", "/environments",
              "/environment-templates", "/environment-templates/new", "/environment-templates/db-web/edit"),
}
# Swagger UI's own markup (static/vendor/, not ours to change): each operation's summary is a button holding
# the copy-link and lock buttons, and its tag headings are h3 under an h2. Only these nodes, only on the docs
# page; its colours are fixed in static/api-docs.css and checked like every other page's.
SWAGGER_MARKUP = {"nested-interactive": ".opblock-summary-control", "heading-order": "#operations-tag-"}
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => n.target.join(" ") + ": " + (n.failureSummary || "").replace(/\\s+/g, " "))}));
}"""


@pytest.fixture
async def server(make_config, start_server, tmp_path):
    """Hosts, guests, a disabled user, a token: every page has the parts it can show."""
    config = make_config(hosts={"h1": {"cpus": 8, "memory_mb": 16384}, "h2": {"cpus": 4, "memory_mb": 8192}},
                         local_catalog=write_catalog(tmp_path))
    srv = await start_server(config)
    users = {}
    for name, admin in (("root", True), ("dave", False), ("erin", False)):
        users[name] = (await srv.ctx.db.run(create_user, name, PASSWORD, is_admin=admin,
                                            password_hash=password_hash())).id
    root = Actor(user_id=users["root"], username="root", is_admin=True)
    dave = Actor(user_id=users["dave"], username="dave", is_admin=False)
    for actor, name in ((dave, "dave-web"), (root, "root-db")):
        guest = await checkout(srv.ctx, actor, CheckoutRequest(name, "tiny", 3, "accessibility"))
        await ready(srv, guest.id)
    await templates.save(srv.ctx, root, "db-web", "a database,\nthen two web servers", {"tiers": [
        {"name": "db", "target": "tiny"},
        {"name": "web", "target": "tiny", "count": 2, "anti_affinity": True, "variables": {"db_host": "{{ db.ip }}"}}]})
    env = await checkout_environment(srv.ctx, dave, EnvironmentRequest("db-web", "lab1", 3, "accessibility"))
    deadline = asyncio.get_running_loop().time() + 60  # each tier is ready once its guests boot (no phone-home)
    while (step := await srv.ctx.db.run(lambda s: s.get(Environment, env.id).step)) != "ready":
        assert step == "provisioning" and asyncio.get_running_loop().time() < deadline, step
        await asyncio.sleep(0.05)
    await srv.ctx.db.run(useradmin.set_active, root, users["erin"], False)
    await srv.ctx.db.run(tokens.create_token, dave, tokens.NewToken("nightly-ci", "write", 30))
    return srv


def page_name(role: str, path: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "overview"
    return f"{role}-{slug}"


async def open_as(browser: Any, base: str, role: str, width: str, theme: str) -> tuple[Any, Any]:
    ctx = await browser.new_context(viewport=WIDTHS[width], color_scheme=theme, bypass_csp=True,
                                    is_mobile=width == "phone", has_touch=width == "phone")
    page = await ctx.new_page()
    if role != "visitor":
        await log_in(page, base, {"admin": "root", "user": "dave"}[role])
    return ctx, page


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=AXE.read_text())
    violations: list[dict[str, Any]] = await page.evaluate(RUN_AXE)
    return violations


@pytest.mark.parametrize("width", WIDTHS)
async def test_every_page_passes_axe_in_both_themes(server, browser, shoot, width):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    failures: list[str] = []
    checked = 0
    for theme in THEMES:
        for role, paths in PAGES.items():
            ctx, page = await open_as(browser, server.base_url, role, width, theme)
            try:
                for path in paths:
                    await page.goto(server.base_url + path)
                    if path.startswith("/api/v1/docs"):
                        await expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
                    dark = await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
                    assert dark == (theme == "dark")
                    await shoot(page, f"{page_name(role, path)}-{width}-{theme}")
                    found = await axe_violations(page)
                    checked += 1
                    for v in found:
                        nodes = v["nodes"]
                        if path == "/api/v1/docs" and v["id"] in SWAGGER_MARKUP:
                            nodes = [n for n in nodes if SWAGGER_MARKUP[v["id"]] not in n]
                        if nodes and (v["impact"] in ("serious", "critical") or v["id"] in ALWAYS):
                            failures.append(f"{role} {path} {width} {theme}: [{v['impact']}] {v['id']}: {v['help']}\n"
                                            + "\n".join("    " + n for n in nodes[:5]))
            finally:
                await ctx.close()
    assert checked == 2 * sum(len(p) for p in PAGES.values())
    assert not failures, f"{len(failures)} violation(s):\n" + "\n".join(failures)


async def test_the_phone_menu_is_a_button_for_keyboards_and_screen_readers(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    ctx, page = await open_as(browser, server.base_url, "user", "phone", "light")
    nav, button = page.locator("#site-nav"), page.locator("header.top button.nav-button")
    await expect(nav).to_be_hidden()
    await expect(button).to_have_attribute("aria-expanded", "false")
    await expect(button).to_have_attribute("aria-controls", "site-nav")
    # the skip link comes first, and leads past the header
    await page.keyboard.press("Tab")
    await expect(page.locator("a.skip-link")).to_be_focused()
    await expect(page.locator("a.skip-link")).to_be_visible()
    await page.keyboard.press("Enter")
    await expect(page.locator("main#main")).to_be_focused()
    # the menu opens from the keyboard, and Escape closes it with the focus back on the button
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(button).to_have_attribute("aria-expanded", "true")
    await expect(nav.locator("a[href='/checkout']")).to_be_visible()
    await shoot(page, "user-menu-open-phone-light")
    await page.keyboard.press("Tab")
    await expect(nav.locator("a").first).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(nav).to_be_hidden()
    await expect(button).to_be_focused()
    await ctx.close()
    # without script there is no button to press: the menu is simply there
    ctx = await browser.new_context(viewport=WIDTHS["phone"], java_script_enabled=False)
    page = await ctx.new_page()
    await page.goto(server.base_url + "/login")
    await expect(page.locator("#site-nav a[href='/login']")).to_be_visible()
    await expect(page.locator("header.top button.nav-button")).to_be_hidden()
    await ctx.close()


async def test_the_audit_log_breaks_no_word_at_desktop_width(server, browser):
    ctx, page = await open_as(browser, server.base_url, "admin", "desktop", "light")
    await page.goto(server.base_url + "/admin/audit")
    broken = await page.evaluate("""() => [...document.querySelectorAll("table.audit td code, table.audit td.nowrap")]
        .filter(el => el.getClientRects().length > 1 || el.scrollWidth > el.clientWidth + 1)
        .map(el => el.textContent)""")
    actions = await page.locator("table.audit td code").all_text_contents()
    assert "user.disable" in actions and broken == []
    await ctx.close()


async def test_the_theme_switch_on_the_profile_wins_over_the_system(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    ctx, page = await open_as(browser, server.base_url, "user", "desktop", "light")
    background = "getComputedStyle(document.body).backgroundColor"
    light = await page.evaluate(background)
    await page.goto(server.base_url + "/profile")
    await page.check("input[name=theme][value=dark]")
    await page.click("#appearance button[type=submit]")
    await expect(page.locator(".flash-ok")).to_have_text("Theme: dark.")
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = await page.evaluate(background)
    assert dark != light and sum(int(c) for c in re.findall(r"\d+", dark)[:3]) < 150, (light, dark)
    await page.goto(server.base_url + "/hosts")
    assert await page.evaluate(background) == dark  # the next page is dark from its first paint
    await shoot(page, "user-hosts-desktop-switched-dark")
    await ctx.close()


async def test_a_token_made_in_the_browser_can_be_copied(server, browser):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    ctx, page = await open_as(browser, server.base_url, "user", "desktop", "light")
    await ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    await page.goto(server.base_url + "/profile")
    await page.fill("input[name=name]", "laptop")
    await page.click(".token-form button[type=submit]")
    secret = await page.locator("#new-token-value").text_content()
    assert secret and secret.startswith("fm_")
    await page.click("button[data-copy=new-token-value]")
    await expect(page.locator("button[data-copy=new-token-value]")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    await page.reload()
    await expect(page.locator("#new-token-value")).to_have_count(0)
    await ctx.close()
