"""Debian's Chromium driven by Playwright against a real server.

Every browser test saves what it looked at into one folder, ``$FM_SCREENSHOTS`` or tests/screenshots/
(named page-role-width-theme by test_accessibility), and the run's last lines say where it is.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import realparts

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("FM_SCREENSHOTS") or Path(__file__).resolve().parent.parent / "screenshots")
_taken: list[Path] = []
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
    """Save a full-page screenshot as NAME.png in the screenshots folder."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async def take(page: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        _taken.append(path)
        return path

    return take


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the screenshots went, so a person can look at them all."""
    if _taken:
        terminalreporter.write_line(f"screenshots: {len(set(_taken))} in {SCREENSHOTS}")
