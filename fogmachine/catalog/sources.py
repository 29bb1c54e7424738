"""The catalog sources by name, and the one the configuration picks.

A new source is one class implementing ``source.CatalogSource``, built from the
``Config`` alone, and one line in ``SOURCES``.
"""

from __future__ import annotations

from collections.abc import Callable

from fogmachine.catalog.cobbler_source import CobblerCatalog
from fogmachine.catalog.local_source import LocalCatalog
from fogmachine.catalog.source import CatalogSource
from fogmachine.config import Config

SOURCES: dict[str, Callable[[Config], CatalogSource]] = {
    "local": LocalCatalog,
    "cobbler": CobblerCatalog,
}


def build_source(config: Config) -> CatalogSource:
    """Cobbler when ``cobbler_url`` is set, else the local file."""
    return SOURCES["cobbler" if config.cobbler_url else "local"](config)
