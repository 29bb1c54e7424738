"""The poller, polled by hand: each change is sent once, and only to the pages that may see it."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select

from fogmachine.db.models import Guest, Host
from fogmachine.web.live import LiveFeed
from fogmachine.web.live.feed import GOING_AWAY
from tests.web.live.conftest import Recorder, quiet


async def test_overlapping_windows_send_each_change_once(live_site):
    """A row read again in the overlap is diffed by content: no duplicate messages."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    await quiet(site)
    feed = LiveFeed(site.ctx, interval_s=3600, overlap_s=30)  # polled by hand below
    await feed.poll_once(full=True)
    rec = Recorder(site.users["alice"])
    feed.subscribe(rec)
    await feed.poll_once()
    assert [m["type"] for m in rec.messages] == ["snapshot"]
    await site.ctx.db.run(lambda s: setattr(s.get(Guest, web1), "hostname", "web1.example.org"))
    for _ in range(3):
        await feed.poll_once()
    updates = [m for m in rec.messages if m["type"] == "update"]
    assert len(updates) == 1 and updates[0]["guests"][0]["hostname"] == "web1.example.org"
    # a change the window missed (stamped long ago) is caught by the full scan
    def old_change(s):
        g = s.get(Guest, web1)
        g.ip = "10.9.9.9"
        s.flush()
        s.execute(Guest.__table__.update().where(Guest.id == web1).values(
            updated_at=dt.datetime(2000, 1, 1)))

    await site.ctx.db.run(old_change)
    await feed.poll_once()
    assert len([m for m in rec.messages if m["type"] == "update"]) == 1
    await feed.poll_once(full=True)
    assert rec.messages[-1]["guests"][0]["ip"] == "10.9.9.9"
    await feed.stop()


async def test_snapshot_waits_for_a_poll_that_started_after_subscribing(live_site):
    site = live_site
    feed = LiveFeed(site.ctx, interval_s=3600)
    await feed.poll_once(full=True)
    rec = Recorder(site.users["alice"])
    feed.subscribe(rec)
    assert rec.messages == []  # the cache may be older than the page the browser just rendered
    web1 = await site.guest("alice", "web1")
    await feed.poll_once()
    assert rec.messages[0]["type"] == "snapshot" and [g["id"] for g in rec.messages[0]["guests"]] == [web1]
    found = await site.ctx.db.run(lambda s: s.scalar(select(Guest.name).where(Guest.id == web1)))
    assert found == "web1"
    await feed.stop()


async def test_a_guest_that_stops_being_mine_is_gone_for_me(live_site):
    """SQLite reuses a deleted last row's id: the same id may come back as someone else's guest
    (or as an unmanaged domain). The page that showed the old one must drop it, not keep it."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    await quiet(site)
    feed = LiveFeed(site.ctx, interval_s=3600)
    await feed.poll_once(full=True)
    alice, bob = Recorder(site.users["alice"]), Recorder(site.users["bob"])
    feed.subscribe(alice)
    feed.subscribe(bob)
    await feed.poll_once()

    def give_away(s):
        g = s.get(Guest, web1)
        g.owner_id = None
        g.managed = False

    await site.ctx.db.run(give_away)
    await feed.poll_once()
    assert alice.messages[-1]["gone"] == [web1] and alice.messages[-1]["guests"] == []
    assert all(m["guests"] == [] and m["gone"] == [] for m in bob.messages)
    await feed.stop()


async def _until(rec: Recorder, check, deadline: float = 60.0) -> dict:
    """The first message ``rec`` got that passes ``check``. The deadline only stops a broken build from
    hanging: the feeds below poll every hour, so only a wake can deliver within it."""
    end = asyncio.get_running_loop().time() + deadline
    while asyncio.get_running_loop().time() < end:
        found = next((m for m in rec.messages if check(m)), None)
        if found is not None:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no such message in {deadline:g} s: {rec.messages}")


async def test_a_commit_of_this_process_wakes_the_feed_at_once(live_site):
    """An hour between polls: the subscription's snapshot and the change arrive only because they
    woke the feed. The read that finds the change is a windowed one (the full scan is an hour away
    too), so on MariaDB (DATETIME in whole seconds) the window must still cover a change just committed."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    await quiet(site)
    feed = LiveFeed(site.ctx, interval_s=3600, full_scan_s=3600)
    await feed.start()
    try:
        rec = Recorder(site.users["alice"])
        feed.subscribe(rec)
        await _until(rec, lambda m: m["type"] == "snapshot")
        await site.ctx.db.run(lambda s: setattr(s.get(Guest, web1), "hostname", "web1.example.org"))
        update = await _until(rec, lambda m: m["type"] == "update")
        assert update["guests"][0]["id"] == web1 and update["guests"][0]["hostname"] == "web1.example.org"
        await site.ctx.db.run(lambda s: setattr(s.get(Host, s.scalar(select(Host.id).where(Host.name == "h2"))),
                                                "state_reason", "cable cut"))
        hosts = await _until(rec, lambda m: m["type"] == "update" and any(h["name"] == "h2" for h in m["hosts"]))
        assert next(h for h in hosts["hosts"] if h["name"] == "h2")["state_reason"] == "cable cut"
    finally:
        await feed.stop()


async def test_a_burst_of_commits_costs_one_more_poll(live_site):
    """Commits that land before the feed gets to run (here: five, the IOLoop blocked meanwhile) are one
    wake: one poll reads them all, and nothing more is owed after it."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    await quiet(site)
    feed = LiveFeed(site.ctx, interval_s=3600, full_scan_s=3600)
    await feed.start()
    try:
        rec = Recorder(site.users["alice"])
        feed.subscribe(rec)
        await _until(rec, lambda m: m["type"] == "snapshot")
        polls, wakes = feed.polls, feed.wakes
        for n in range(5):  # run_sync on the IOLoop's own thread: the wakes queue until it runs again
            site.ctx.db.run_sync(lambda s, n=n: setattr(s.get(Guest, web1), "hostname", f"web1-{n}"))
        update = await _until(rec, lambda m: m["type"] == "update")
        assert update["guests"][0]["hostname"] == "web1-4"
        assert feed.wakes == wakes + 5 and feed.polls == polls + 1
        assert feed._wake is not None and not feed._wake.is_set()
    finally:
        await feed.stop()


async def test_stopping_the_feed_unhooks_it_and_says_going_away(live_site):
    site = live_site
    feed = LiveFeed(site.ctx, interval_s=3600)
    closed: list[tuple[int, str]] = []

    class Closing(Recorder):
        def close(self, code: int, reason: str) -> None:
            closed.append((code, reason))

    await feed.start()
    feed.subscribe(Closing(site.users["alice"]))
    hooks = feed._watch
    assert hooks is not None and hooks.watching
    await feed.stop()
    assert closed == [GOING_AWAY] and GOING_AWAY[0] == 1001 and not hooks.watching and not feed.subscribers
    wakes = feed.wakes
    await site.ctx.db.run(lambda s: setattr(s.get(Host, s.scalar(select(Host.id).where(Host.name == "h2"))),
                                            "state_reason", "after the stop"))
    await asyncio.sleep(0)  # a wake already handed to the IOLoop would run here
    assert feed.wakes == wakes


async def test_a_stop_right_after_a_wake_ends_the_feed(live_site):
    """Found by a CI run (3 of 4 workers hung in a server's stop): a commit's wake completed the poll loop's
    wait in the same turn of the IOLoop as stop() cancelled it, and asyncio.wait_for (Python 3.11) returned
    the wait's result instead of the cancellation, so the loop polled on and stop() waited for it forever.
    Here each stop follows a commit at once; the deadline only keeps a broken build from hanging."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    await quiet(site)
    for n in range(10):
        feed = LiveFeed(site.ctx, interval_s=3600, full_scan_s=3600)
        await feed.start()
        await asyncio.sleep(0)  # the poll loop is waiting for its next turn
        await site.ctx.db.run(lambda s, n=n: setattr(s.get(Guest, web1), "hostname", f"web1-{n}"))
        async with asyncio.timeout(60):
            await feed.stop()
        assert feed._task is None


async def test_a_page_that_subscribes_during_a_full_read_is_not_taken_for_a_logged_out_one(live_site):
    """The full read re-checks users and sessions of the subscribers there were when it began; a page that
    came during it (a login's commit wakes a full read just as its page opens the socket) stays."""
    site = live_site
    feed = LiveFeed(site.ctx, interval_s=3600)
    closed: list[tuple[int, str]] = []

    class Closing(Recorder):
        def close(self, code: int, reason: str) -> None:
            closed.append((code, reason))

    await feed.poll_once(full=True)
    reading = asyncio.create_task(feed.poll_once(full=True))
    await asyncio.sleep(0)  # the read is on its way to the database thread
    late = Closing(site.users["alice"])
    feed.subscribe(late)
    await reading
    assert closed == [] and late in feed.subscribers
    await feed.poll_once(full=True)  # the next full read knows it, and its user and session are fine
    assert closed == [] and [m["type"] for m in late.messages] == ["snapshot"]
    await feed.stop()


async def test_pages_are_read_while_followed_and_a_full_read_reads_them_again(live_site):
    """A guest's page is read only while a socket follows it (a poll reads no steps for nobody); a change the
    window missed reaches the page at the full read, as it reaches the rows; a page nobody follows any more
    leaves the cache, so one opened later is read afresh, not served from what an old read left."""
    site = live_site
    web1 = await site.guest("alice", "web1")
    await quiet(site)
    feed = LiveFeed(site.ctx, interval_s=3600, overlap_s=30)  # polled by hand below
    await feed.poll_once(full=True)
    assert feed.pages == {}
    rec = Recorder(site.users["alice"], guest_page=web1)
    feed.subscribe(rec)
    await feed.poll_once()
    assert [m["type"] for m in rec.messages] == ["snapshot", "page"]
    assert rec.messages[1]["guest"]["ssh"] == "" and set(feed.pages) == {web1}

    def old_change(s):
        s.get(Guest, web1).ip = "10.9.9.9"
        s.flush()
        s.execute(Guest.__table__.update().where(Guest.id == web1).values(updated_at=dt.datetime(2000, 1, 1)))

    await site.ctx.db.run(old_change)
    await feed.poll_once()
    assert len(rec.messages) == 2  # the window did not see it
    await feed.poll_once(full=True)
    assert [m["type"] for m in rec.messages[2:]] == ["update", "page"]
    assert rec.messages[-1]["guest"]["ssh"] == "ssh alice@10.9.9.9"
    await feed.poll_once(full=True)
    assert len(rec.messages) == 4  # read again, the same: no news

    feed.unsubscribe(rec)
    await feed.poll_once()
    assert feed.pages == {}
    await feed.stop()
