"""The catalog a checkout picks from: Cobbler's profiles and images, or the local catalog file.

With Cobbler, listing the catalog costs three XML-RPC calls, so the view is
cached for ``catalog_ttl`` seconds; when Cobbler cannot be reached the last
good view is served and marked stale, so the pages keep working while Cobbler
is down.

A checkout does not trust the cache: ``resolve`` asks Cobbler again for the one
entry (a profile deleted a minute ago must not be checked out, and an
unreachable Cobbler must refuse the checkout before anything is made).

Without Cobbler (``cobbler_url`` empty) the catalog is the local file
(``local_catalog``, see ``local_file``), re-read when it changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogmachine.catalog.cobbler_mapping import blended_entry, catalog_entries, image_entry
from fogmachine.catalog.entry import CatalogEntry, CatalogView, split_target
from fogmachine.catalog.local_file import load_local
from fogmachine.config import Config
from fogmachine.errors import BackendTimeout, CobblerError, ConfigError, ValidationError

log = logging.getLogger(__name__)

RETRY_AFTER = 10.0


@dataclass
class _LocalFile:
    path: Path
    mtime: float = -1.0
    entries: list[CatalogEntry] = field(default_factory=list)
    error: str = ""


class Catalog:
    """The catalog a checkout picks from; a Component of the server (``ctx.catalog``)."""

    def __init__(self, config: Config, cobbler: Any = None) -> None:
        self.config = config
        self.cobbler = cobbler
        self.ttl = config.catalog_ttl
        self._view: CatalogView | None = None
        self._retry_at = 0.0  # after a failed refresh, serve the stale view until then
        self._refreshing: asyncio.Future[CatalogView] | None = None
        self._local = _LocalFile(Path(config.local_catalog)) if cobbler is None else None

    @property
    def source(self) -> str:
        return "local" if self.cobbler is None else "cobbler"

    async def start(self) -> None:
        if self._local is not None:
            # A malformed file stops the server with a message; a missing one only leaves the catalog empty.
            if self._local.path.exists():
                self._reload_local(strict=True)
            else:
                log.warning("no local catalog at %s: nothing can be checked out until it exists",
                            self._local.path)

    async def stop(self) -> None:
        self._view = None

    # -- local -----------------------------------------------------------------------------------
    def _reload_local(self, strict: bool = False) -> None:
        local = self._local
        assert local is not None
        try:
            mtime = os.stat(local.path).st_mtime
        except OSError as exc:
            local.entries, local.error, local.mtime = [], f"cannot read {local.path}: {exc.strerror}", -1.0
            return
        if mtime == local.mtime:
            return
        try:
            local.entries, local.error = load_local(local.path), ""
        except ConfigError as exc:
            if strict:
                raise
            # Keep what was good before; say why the edit was not taken.
            log.error("local catalog not reloaded: %s", exc.message)
            local.error = exc.message
        local.mtime = mtime

    # -- listing ---------------------------------------------------------------------------------
    async def entries(self) -> CatalogView:
        """The catalog, from the cache when it is younger than catalog_ttl."""
        if self._local is not None:
            self._reload_local()
            return CatalogView(list(self._local.entries), stale=bool(self._local.error), source="local",
                               error=self._local.error, fetched_at=time.time())
        view, now = self._view, time.monotonic()
        if view is not None and not view.stale and now - view.fetched_at < self.ttl:
            return view
        if view is not None and view.stale and now < self._retry_at:
            return view
        if self._refreshing is None:
            # One refresh at a time: concurrent callers share it.
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(self._refresh_done)
        return await asyncio.shield(self._refreshing)

    def _refresh_done(self, _future: asyncio.Future[CatalogView]) -> None:
        self._refreshing = None

    def invalidate(self) -> None:
        self._view, self._retry_at = None, 0.0

    async def _refresh(self) -> CatalogView:
        try:
            profiles, images, distros, settings = await asyncio.gather(
                self.cobbler.list_profiles(), self.cobbler.list_images(), self.cobbler.list_distros(),
                self.cobbler.settings())
        except (CobblerError, BackendTimeout) as exc:
            old = self._view
            log.warning("catalog: %s; serving the %s", exc.message, "last good list" if old else "empty list")
            # Try again soon (not on every page view: a hanging Cobbler would cost each one the timeout).
            self._retry_at = time.monotonic() + min(self.ttl, RETRY_AFTER)
            self._view = CatalogView(old.entries if old else [], stale=True, source="cobbler", error=exc.message,
                                     fetched_at=old.fetched_at if old else 0.0)
            return self._view
        entries = catalog_entries(profiles, images, distros, settings)
        self._view = CatalogView(entries, stale=False, source="cobbler", fetched_at=time.monotonic())
        return self._view

    # -- one entry, fresh, for a checkout -----------------------------------------------------------
    async def resolve(self, target: str) -> CatalogEntry:
        """The entry ``target`` names, fresh from its source; ValidationError(field='target') when unknown.

        With Cobbler this is one or two calls, and it raises Cobbler's error (502 naming its URL) when Cobbler
        is unreachable, so a checkout never starts against a Cobbler that cannot take it.
        """
        if not isinstance(target, str) or not target.strip():
            raise ValidationError("target (a profile or image name) is required", field="target")
        kind, name = split_target(target.strip())
        if self._local is not None:
            self._reload_local()
            if kind in (None, "local"):
                for local in self._local.entries:
                    if local.name == name:
                        return local
            raise self._unknown(target)
        entry: CatalogEntry | None = None
        if kind in (None, "profile"):
            entry = await self._cobbler_profile(name)
        if entry is None and kind in (None, "image"):
            image = await self.cobbler.get_image(name, resolved=True)
            if image is not None:
                entry = image_entry(image, {})
        if entry is None:
            raise self._unknown(target)
        return entry

    async def _cobbler_profile(self, name: str) -> CatalogEntry | None:
        try:
            data = await self.cobbler.blended_profile(name)
        except CobblerError as exc:
            if "profile not found" in exc.details.get("fault", ""):
                return None
            raise
        return blended_entry(data)

    def _unknown(self, target: str) -> ValidationError:
        where = "Cobbler profile or image" if self.cobbler is not None else "profile in the local catalog"
        return ValidationError(f"unknown {where} {target!r}", field="target", details={"target": target})
