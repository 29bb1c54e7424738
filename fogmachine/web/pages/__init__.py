"""The browser dashboard: one module per page group, each with ``default_handlers``."""

from __future__ import annotations

from typing import Any

from fogmachine.web import live
from fogmachine.web.pages import (
    admin,
    audit,
    auth,
    checkout,
    environments,
    envtemplates,
    guest,
    overview,
    profile,
    reservations,
)


def routes() -> list[tuple[str, Any]]:
    handlers: list[tuple[str, Any]] = []
    for module in (overview, auth, reservations, guest, checkout, environments, envtemplates, profile, admin, audit,
                   live):
        handlers.extend(module.default_handlers)
    return handlers
