"""Environments in Chromium against a real server on test-driver hosts (the catalog's tiny entry has no
phone-home: each tier is ready once its guests boot).

A user checks an environment out of a shared template through the form, lands on its page and watches the
ladder turn ready without a reload (the engine is held back until the page is open, so the page sees it on its
way), extends it and deletes it. An administrator saves a template with a bad variable and is told under the
tiers, naming the tier and the variable, with the cursor there.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from sqlalchemy import select

from fogmachine.db.models import Environment, Guest, User
from fogmachine.services.actor import Actor
from fogmachine.services.environments import templates
from tests.browser.test_dashboard import log_in, open_server

pytestmark = pytest.mark.browser
# Generous: tiers provision one after the other on a machine other tests share.
WAIT_MS = 60_000
DB_WEB: dict[str, Any] = {"tiers": [
    {"name": "db", "target": "tiny"},
    {"name": "web", "target": "tiny", "count": 2, "anti_affinity": True, "variables": {"db_host": "{{ db.ip }}"}},
]}


@pytest.fixture
async def server(make_config, start_server, tmp_path):
    srv = await open_server(make_config, start_server, tmp_path,
                            {"h1": {"cpus": 8, "memory_mb": 16384}, "h2": {"cpus": 4, "memory_mb": 8192}})
    root = await srv.ctx.db.run(lambda s: s.scalar(select(User.id).where(User.username == "root")))
    await templates.save(srv.ctx, Actor(root, "root", is_admin=True), "db-web", "a database, then two web servers",
                         DB_WEB)
    return srv


async def test_a_user_checks_out_an_environment_and_watches_its_ladder_turn_ready(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, base, "dave")
    await page.click("header.top nav a[href='/environments']")
    await page.wait_for_url(base + "/environments")
    await page.click("a[href='/environments/new']")
    await page.wait_for_url(base + "/environments/new")
    await page.select_option("#env-template", "db-web")
    await page.fill("input[name=name]", "lab1")
    await page.fill("input[name=days]", "3")
    await page.fill("input[name=purpose]", "trying environments")
    await shoot(page, "environment-new")

    # The engine waits for this lock (its turn for environment 1, the first) until the page is open.
    held = server.ctx.environments.lock(1)
    await held.acquire()
    try:
        await page.click("#environment-form button[type=submit]")
        await page.wait_for_url(base + "/environments/1")
        sentence = page.locator("#env-sentence")
        await expect(sentence).to_have_text("Provisioning tier 1 of 2 (db)")
        await expect(page.locator(".flash-ok")).to_contain_text("lab1 is on its way")
        await expect(page.locator("[data-tier-state]")).to_have_text(["waiting", "waiting"])
        await expect(page.locator("#live-status")).to_have_text("● live")
        await page.evaluate("window.neverReloaded = true")
        await shoot(page, "environment-waiting")
    finally:
        held.release()

    await expect(sentence).to_have_text("Ready: all 2 tiers are ready")
    await expect(page.locator("[data-tier-state]")).to_have_text(["ready", "ready"])
    await expect(page.locator("#env-step")).to_have_text("ready")
    rows = page.locator("ol.ladder tr.guest-row")
    await expect(rows).to_have_count(3)
    await expect(rows.locator("[data-field=step]")).to_have_text(["ready", "ready", "ready"])  # live.js, row by row
    assert await page.evaluate("window.neverReloaded") is True
    assert await server.ctx.db.run(lambda s: s.get(Environment, 1).step) == "ready"
    await shoot(page, "environment-ready")

    # each row leads to its guest, whose page names the environment and leads back
    await rows.nth(1).locator("a.guest-link").click()
    await page.wait_for_url(re.compile(r"/guests/\d+$"))
    await expect(page.locator("#environment-line")).to_have_text("Part of environment lab1 (tier web)")
    await page.click("#environment-line a")
    await page.wait_for_url(base + "/environments/1")

    # extend by a day: every guest gets the new end
    await page.locator("#env-actions .extend-buttons button", has_text="+1 day").click()
    await expect(page.locator(".flash-ok")).to_contain_text("lab1: extended by 1 day(s)")
    await expect(page.locator("#env-lease .timeleft")).to_have_text(re.compile(r"^(3 d|4 d)"))
    ends = await server.ctx.db.run(lambda s: {g.expires_at for g in s.scalars(select(Guest))}
                                   | {s.get(Environment, 1).expires_at})
    assert len(ends) == 1

    # delete, answering the question in the page
    questions: list[str] = []

    async def answer(dialog: Any) -> None:
        questions.append(dialog.message)
        await dialog.accept()

    page.on("dialog", lambda dialog: asyncio.ensure_future(answer(dialog)))
    await page.locator("#env-actions button", has_text="Delete").click()
    await page.wait_for_url(base + "/environments")
    await expect(page.locator(".flash-ok")).to_have_text("lab1: deleted, with its 3 guests.")
    assert questions and questions[0].startswith("Delete lab1?")
    await expect(page.locator("p.empty")).to_contain_text("You have no environments.")
    assert await server.ctx.db.run(lambda s: {g.step for g in s.scalars(select(Guest))}) == {"retired"}
    await shoot(page, "environments-after-delete")
    assert errors == []
    await context.close()


async def test_an_administrator_is_told_under_the_tiers_which_variable_is_wrong(server, browser, shoot):
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base_url
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, base, "root")
    await page.goto(base + "/environment-templates")
    await page.click("a[href='/environment-templates/db-web/edit']")
    await page.wait_for_url(base + "/environment-templates/db-web/edit")
    tiers = page.locator("#template-tiers")
    typed = (await tiers.input_value()).replace("{{ db.ip }}", "{{ db.port }}")
    await tiers.fill(typed)
    await page.fill("textarea[name=description]", "a database,\nthen two web servers")
    await page.click("form.template-editor button[type=submit]")
    await page.wait_for_url(base + "/environment-templates/db-web/edit")
    error = page.locator("#template-tiers-error")
    await expect(error).to_contain_text("tiers[1] (web), variable db_host:")
    await expect(error).to_contain_text("port")
    await expect(tiers).to_have_attribute("aria-invalid", "true")
    await expect(tiers).to_be_focused()
    assert await tiers.input_value() == typed  # what was typed comes back
    await shoot(page, "environment-template-refused")

    # corrected, it saves (the description's line break included)
    await tiers.fill(typed.replace("{{ db.port }}", "{{ db.ip }}"))
    await page.click("form.template-editor button[type=submit]")
    await page.wait_for_url(base + "/environment-templates")
    await expect(page.locator(".flash-ok")).to_have_text("Saved environment template db-web: db x1, web x2.")
    await expect(page.locator("#tpl-db-web-title")).to_have_text("db-web")
    await expect(page.locator("article.env-template .description")).to_contain_text("then two web servers")
    saved = await server.ctx.db.run(templates.get_template, Actor(None, "root", is_admin=True), "db-web")
    assert saved.description == "a database,\nthen two web servers"
    assert errors == []
    await context.close()
