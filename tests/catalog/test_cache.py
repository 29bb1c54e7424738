"""The cache of a slow source's list: kept for its ttl, shared by concurrent callers, stale while the source is
away (and not asked again on every call then)."""

from __future__ import annotations

import asyncio
import time

import pytest

from fogmachine.catalog.cache import RETRY_AFTER, ViewCache
from fogmachine.catalog.entry import CatalogEntry
from fogmachine.errors import BackendTimeout, CobblerError

WEB = CatalogEntry("web", "profile", 256, 1, 0, "qemu")
DB = CatalogEntry("db", "profile", 512, 2, 0, "qemu")


class Listing:
    """What the source answers, call by call: a list of entries, or an error to raise."""

    def __init__(self, *answers: list[CatalogEntry] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> list[CatalogEntry]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_fresh_view_is_served_from_the_cache_until_its_ttl_has_passed() -> None:
    listing = Listing([WEB], [WEB, DB])
    cache = ViewCache("cobbler", listing, ttl=60)
    first = await cache.get()
    assert (first.entries, first.stale, first.source, first.error) == ([WEB], False, "cobbler", "")
    assert await cache.get() is first and listing.calls == 1
    cache.ttl = 0
    assert (await cache.get()).entries == [WEB, DB] and listing.calls == 2


async def test_concurrent_callers_share_one_refresh() -> None:
    listing = Listing([WEB])
    listing.gate = asyncio.Event()
    cache = ViewCache("cobbler", listing, ttl=60)
    waiting = [asyncio.ensure_future(cache.get()) for _ in range(5)]
    await asyncio.sleep(0)
    listing.gate.set()
    views = await asyncio.gather(*waiting)
    assert listing.calls == 1 and all(v is views[0] for v in views)


@pytest.mark.parametrize("error", [CobblerError("Cobbler at http://c/ is unreachable: refused"),
                                   BackendTimeout("Cobbler at http://c/ did not answer get_profiles within 10 s")])
async def test_a_source_that_is_away_gives_the_last_good_view_marked_stale(error: BackendTimeout) -> None:
    listing = Listing([WEB], error, [DB])
    cache = ViewCache("cobbler", listing, ttl=0)
    good = await cache.get()
    stale = await cache.get()
    assert (stale.entries, stale.stale, stale.source, stale.error) == ([WEB], True, "cobbler", error.message)
    assert stale.fetched_at == good.fetched_at  # how old the list really is
    assert (await cache.get()).entries == [DB] and listing.calls == 3  # ttl 0: the retry is due at once


async def test_the_retry_waits_at_most_retry_after_and_then_asks_again() -> None:
    listing = Listing(CobblerError("down"), [DB])
    cache = ViewCache("cobbler", listing, ttl=3600)
    empty = await cache.get()
    assert (empty.entries, empty.stale, empty.error, empty.fetched_at) == ([], True, "down", 0.0)
    # Not asked again on every call while it is away (a hanging source would cost each page view its timeout).
    assert await cache.get() is empty and listing.calls == 1
    assert 0 < cache._retry_at - time.monotonic() <= RETRY_AFTER
    cache._retry_at = 0.0  # the RETRY_AFTER seconds have passed
    assert (await cache.get()).entries == [DB] and listing.calls == 2


async def test_an_error_that_is_not_the_sources_is_not_hidden() -> None:
    cache = ViewCache("cobbler", Listing(KeyError("name")), ttl=60)
    with pytest.raises(KeyError):
        await cache.get()


async def test_clear_forgets_the_view() -> None:
    listing = Listing([WEB], [DB])
    cache = ViewCache("cobbler", listing, ttl=60)
    await cache.get()
    cache.clear()
    assert (await cache.get()).entries == [DB] and listing.calls == 2
