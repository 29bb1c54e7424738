"""A slow source's list, kept for ``catalog_ttl`` seconds, and kept when the source is away.

Listing Cobbler's catalog costs several XML-RPC calls, so the view is cached;
when a refresh fails the last good view is served and marked stale (with the
source's error), so the pages keep working while the source is down. After a
failure the next refresh waits ``min(ttl, RETRY_AFTER)`` seconds: a source that
hangs must not cost every page view its timeout. Concurrent callers share one
refresh. A checkout never reads this cache: it asks the source afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from fogmachine.catalog.entry import CatalogEntry, CatalogView
from fogmachine.errors import BackendError

log = logging.getLogger(__name__)

RETRY_AFTER = 10.0


class ViewCache:
    """The cached view of one source; ``fetch`` lists it (raising a BackendError when it cannot)."""

    def __init__(self, source: str, fetch: Callable[[], Awaitable[list[CatalogEntry]]], ttl: float) -> None:
        self.source = source
        self.fetch = fetch
        self.ttl = ttl
        self._view: CatalogView | None = None
        self._retry_at = 0.0  # after a failed refresh, serve the stale view until then
        self._refreshing: asyncio.Future[CatalogView] | None = None

    def clear(self) -> None:
        self._view = None

    async def get(self) -> CatalogView:
        """The view, from the cache when it is younger than ``ttl``."""
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

    async def _refresh(self) -> CatalogView:
        try:
            entries = await self.fetch()
        except BackendError as exc:
            old = self._view
            log.warning("catalog: %s; serving the %s", exc.message, "last good list" if old else "empty list")
            # Try again soon (not on every page view: a hanging source would cost each one the timeout).
            self._retry_at = time.monotonic() + min(self.ttl, RETRY_AFTER)
            self._view = CatalogView(old.entries if old else [], stale=True, source=self.source, error=exc.message,
                                     fetched_at=old.fetched_at if old else 0.0)
            return self._view
        self._view = CatalogView(entries, stale=False, source=self.source, fetched_at=time.monotonic())
        return self._view
