"""What can be checked out, and each guest's record with the source it came from.

``source`` is the interface every catalog source implements (``CatalogSource``)
and ``sources`` the table of them by name (the ``catalog_source`` setting
picks one); ``local_source`` (the local INI
file, parsed by ``local_file``) and ``cobbler_source`` (Cobbler's profiles and
images, mapped by ``cobbler_mapping`` and cached by ``cache``) are the two
there are. ``entry`` is what every source describes (``CatalogEntry``).
"""

from fogmachine.catalog.cobbler_source import CobblerCatalog
from fogmachine.catalog.entry import KINDS, CatalogEntry, CatalogView, parse_network, split_target
from fogmachine.catalog.local_file import load_local
from fogmachine.catalog.local_source import LocalCatalog
from fogmachine.catalog.source import CatalogSource, Registration
from fogmachine.catalog.sources import SOURCES, build_source, source_name

__all__ = ["KINDS", "SOURCES", "CatalogEntry", "CatalogSource", "CatalogView", "CobblerCatalog", "LocalCatalog",
           "Registration", "build_source", "load_local", "parse_network", "source_name", "split_target"]
