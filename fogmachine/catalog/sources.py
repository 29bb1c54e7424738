"""The catalog sources by name, and the one the ``catalog_source`` setting picks.

As JupyterHub picks its Spawner: a new source is one class implementing
``source.CatalogSource``, built from the ``Config`` alone (it reads its own
settings and refuses, with a ConfigError, what it cannot work with), and one
line in ``SOURCES``; ``catalog_source = NAME`` then picks it. ``auto``, the
default, is what Fogmachine always did: Cobbler when ``cobbler_url`` is set,
else the local file.
"""

from __future__ import annotations

from collections.abc import Callable

from fogmachine.catalog.cobbler_source import CobblerCatalog
from fogmachine.catalog.local_source import LocalCatalog
from fogmachine.catalog.source import CatalogSource
from fogmachine.config import Config
from fogmachine.errors import ConfigError

SOURCES: dict[str, Callable[[Config], CatalogSource]] = {
    "local": LocalCatalog,
    "cobbler": CobblerCatalog,
}
AUTO = "auto"


def source_name(config: Config) -> str:
    """The name in ``SOURCES`` that ``catalog_source`` picks; ConfigError (naming where the value came from)
    for a name that is not there."""
    value = str(config.catalog_source)
    name = value.strip().lower()
    if name == AUTO:
        return "cobbler" if config.cobbler_url else "local"
    if name not in SOURCES:
        origin = config.origins.get("catalog_source", "the default")
        raise ConfigError(f"{origin}: bad value {value!r} for catalog_source: must be one of "
                          f"{', '.join([AUTO, *sorted(SOURCES)])}")
    return name


def build_source(config: Config) -> CatalogSource:
    """The catalog source the configuration picks (not started); ConfigError when it cannot be built."""
    return SOURCES[source_name(config)](config)
