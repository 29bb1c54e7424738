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
