"""The JSON API under /api/v1: one module per resource, each with ``default_handlers``."""

from __future__ import annotations

from typing import Any

from fogmachine.web.api import meta

API_PREFIX = "/api/v1"


def routes() -> list[tuple[str, Any]]:
    handlers: list[tuple[str, Any]] = []
    for module in (meta,):
        handlers.extend(module.default_handlers)
    return handlers
