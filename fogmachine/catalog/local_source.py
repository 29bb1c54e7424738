"""The local catalog file as a catalog source: no Cobbler, no registration.

The file (``local_catalog``, parsed by ``local_file``) is read at start and
again whenever it changes: a malformed file stops the server with a message,
a missing one only leaves the catalog empty, and a broken edit keeps the last
good catalog, marked stale with the reason. Guests of this source have no
record anywhere but their row: their phone-home token reaches them on their
kernel command line (``{phonehome_url}``), so there is nothing to register,
unregister or blank.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from fogmachine.catalog.entry import CatalogEntry, CatalogView
from fogmachine.catalog.local_file import load_local
from fogmachine.catalog.source import Registration, check_target, unknown_target
from fogmachine.config import Config
from fogmachine.errors import ConfigError

log = logging.getLogger(__name__)


class LocalCatalog:
    """The ``local`` catalog source."""

    name = "local"

    def __init__(self, config: Config) -> None:
        self.path = Path(config.local_catalog)
        self._mtime = -1.0
        self._entries: list[CatalogEntry] = []
        self._error = ""

    async def start(self) -> None:
        # A malformed file stops the server with a message; a missing one only leaves the catalog empty.
        if self.path.exists():
            self._reload(strict=True)
        else:
            log.warning("no local catalog at %s: nothing can be checked out until it exists", self.path)

    async def stop(self) -> None:
        return None

    def _reload(self, strict: bool = False) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as exc:
            self._entries, self._error, self._mtime = [], f"cannot read {self.path}: {exc.strerror}", -1.0
            return
        if mtime == self._mtime:
            return
        try:
            self._entries, self._error = load_local(self.path), ""
        except ConfigError as exc:
            if strict:
                raise
            # Keep what was good before; say why the edit was not taken.
            log.error("local catalog not reloaded: %s", exc.message)
            self._error = exc.message
        self._mtime = mtime

    async def entries(self) -> CatalogView:
        self._reload()
        return CatalogView(list(self._entries), stale=bool(self._error), source=self.name, error=self._error,
                           fetched_at=time.time())

    async def resolve(self, target: str) -> CatalogEntry:
        kind, name = check_target(target)
        self._reload()
        if kind in (None, "local"):
            for entry in self._entries:
                if entry.name == name:
                    return entry
        raise unknown_target(target, "profile in the local catalog")

    # -- registration: none ------------------------------------------------------------------------
    def record_for(self, guest: str) -> str:
        return ""

    async def register(self, guest: Registration) -> None:
        return None

    async def unregister(self, record: str) -> bool:
        return False

    async def installed(self, record: str) -> bool:
        return False

    async def records(self) -> list[str]:
        return []
