"""What can be checked out: Cobbler's profiles and images, or the local catalog file.

``entry`` is what both sources describe (``CatalogEntry``); ``local_file``
parses the local INI file; ``cobbler_mapping`` turns Cobbler's objects into
entries; ``cache`` holds the ``Catalog`` the server attaches as ``ctx.catalog``.
"""

from fogmachine.catalog.cache import Catalog
from fogmachine.catalog.cobbler_mapping import blended_entry, image_entry, profile_entry
from fogmachine.catalog.entry import KINDS, CatalogEntry, CatalogView, parse_network, split_target
from fogmachine.catalog.local_file import load_local

__all__ = ["KINDS", "Catalog", "CatalogEntry", "CatalogView", "blended_entry", "image_entry", "load_local",
           "parse_network", "profile_entry", "split_target"]
