"""Debian's Chromium driven by Playwright against a real server; screenshots go to tests/screenshots/."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import realparts

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Chromium through Playwright; missing, the test fails (skips only under FM_ALLOW_MISSING=chromium)."""
    realparts.use("chromium")
    try:
        playwright_api = importlib.import_module("playwright.async_api")
    except ImportError as exc:
        realparts.missing("chromium", f"the playwright package is not installed ({exc})")
    if not shutil.which(CHROMIUM):
        realparts.missing("chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def shoot():
    """Save a full-page screenshot as tests/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(exist_ok=True)

    async def take(page: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take
