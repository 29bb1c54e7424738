"""The JSON API under /api/v1: one module per resource, each with ``default_handlers``.

``routes()`` also carries the original's ``/guest/<id-or-mac>/<action>`` routes
(``fogmachine.web.legacy``) for old scripts; they share the API's handler base,
its authentication and its error shape, and the OpenAPI document lists them as
deprecated.
"""

from __future__ import annotations

from typing import Any

from fogmachine.web import legacy
from fogmachine.web.api import (
    audit,
    catalog,
    environments,
    envtemplates,
    guests,
    hosts,
    meta,
    openapi,
    tokens,
    users,
)

API_PREFIX = "/api/v1"
MODULES = (meta, hosts, guests, environments, envtemplates, catalog, users, tokens, audit, openapi)


def routes() -> list[tuple[Any, ...]]:
    handlers: list[tuple[Any, ...]] = []
    for module in (*MODULES, legacy):
        handlers.extend(module.default_handlers)
    return handlers


def documented_routes() -> list[tuple[Any, ...]]:
    """The routes the OpenAPI document describes (every one served by an ApiHandler)."""
    return routes()
