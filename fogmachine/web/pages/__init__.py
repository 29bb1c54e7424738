"""The browser dashboard: one module per page group, each with ``default_handlers``."""

from __future__ import annotations

from typing import Any

from fogmachine.web.pages import overview


def routes() -> list[tuple[str, Any]]:
    handlers: list[tuple[str, Any]] = []
    for module in (overview,):
        handlers.extend(module.default_handlers)
    return handlers
