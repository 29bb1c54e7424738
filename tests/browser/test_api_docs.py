"""The API's documentation page in Chromium: Swagger UI renders every operation from local files only."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.browser


async def test_docs_render_every_operation_without_the_internet(make_config, start_server, browser, shoot):
    srv = await start_server(make_config())
    doc = json.loads((await srv.fetch("/api/v1/openapi.json")).body)
    operations = sum(len(item) for item in doc["paths"].values())
    page = await browser.new_page()
    outside: list[str] = []

    async def only_local(route: Any) -> None:
        if route.request.url.startswith(srv.base_url):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_local)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(srv.base_url + "/api/v1/docs")
    await page.wait_for_selector(".opblock", timeout=20_000)
    assert await page.locator(".opblock").count() == operations
    info = await page.locator(".information-container").inner_text(timeout=5_000)
    assert "Fogmachine" in info and "Authorization: Bearer" in info
    await shoot(page, "api-docs")
    assert outside == [], f"the docs page reached out: {outside}"
    assert errors == []


RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
"""


async def test_docs_work_under_their_csp_and_try_it_out_reaches_the_server(make_config, start_server, browser):
    srv = await start_server(make_config())
    page = await browser.new_page()
    await page.add_init_script(RECORD_VIOLATIONS)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    reply = await page.goto(srv.base_url + "/api/v1/docs")
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    await page.wait_for_selector(".opblock", timeout=20_000)
    # "Try it out" on GET /api/v1/version: a fetch under connect-src 'self'.
    block = page.locator(".opblock", has=page.locator("[data-path='/api/v1/version']")).first
    await block.locator(".opblock-summary").click()
    await block.locator("button.try-out__btn").click()
    await block.locator("button.execute").click()
    await block.locator(".live-responses-table tr.response .response-col_status").first.wait_for(timeout=20_000)
    status = await block.locator(".live-responses-table tr.response .response-col_status").first.inner_text()
    assert status.strip() == "200"
    violations = await page.evaluate("window.__csp")
    assert violations == [], violations
    assert not [m for m in console if "Content Security Policy" in m], console
    assert errors == []


async def test_another_site_cannot_frame_the_docs(make_config, start_server, browser):
    import asyncio

    import tornado.web

    from tests.support.serverproc import free_port

    srv = await start_server(make_config())
    docs = srv.base_url + "/api/v1/docs"

    class Framing(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write(f'<!doctype html><title>evil</title><iframe id="f" src="{docs}" width="800" height="600">'
                       "</iframe>")

    port = free_port()
    other = tornado.web.Application([(r"/", Framing)]).listen(port, "127.0.0.1")  # another origin: another port
    try:
        page = await browser.new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(msg.text))
        await page.goto(f"http://127.0.0.1:{port}/")
        for _ in range(200):  # the positive signal: Chromium says it refused
            if any("frame" in m and ("X-Frame-Options" in m or "frame-ancestors" in m) for m in console):
                break
            await asyncio.sleep(0.1)
        assert any("frame-ancestors" in m or "X-Frame-Options" in m for m in console), console
        frame = page.frame_locator("#f")
        assert await frame.locator("#swagger-ui").count() == 0
    finally:
        other.stop()
