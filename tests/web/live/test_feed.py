"""The poller, polled by hand: each change is sent once, and only to the pages that may see it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from fogmachine.db.models import Guest
from fogmachine.web.live import LiveFeed
from tests.support import provisioning as pv
from tests.web.live.conftest import Recorder


async def quiet(site) -> None:
    """Wait until nothing more is written to the guests on its own: provisioning's follow-ups are done and each
    host was read once more (a domain's start is recorded by its event and a resync that may come after READY;
    a write then would be a second, genuine, update and the counts below would be off by one)."""
    await pv.settle(site.ctx)
    for conn in site.ctx.hosts.all():
        await conn.resync()


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
