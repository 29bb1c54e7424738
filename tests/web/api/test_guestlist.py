"""The guest-list cache: served again while the data's version holds, rebuilt the moment it moves."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import update

from fogmachine.db import migrate
from fogmachine.db.models import Guest, Host, User
from fogmachine.db.session import Database
from fogmachine.services.actor import Actor
from fogmachine.services.guests import GuestFilter
from fogmachine.web.api.guestlist import RECENT_S, GuestListCache


@pytest.fixture
def db(database_url):
    database = Database(database_url, threads=4)
    migrate.ensure_schema(database.engine)
    with database.session() as session:
        alice, bob = User(username="alice"), User(username="bob")
        host = Host(name="h1", uri="test:///default", virt_type="test")
        session.add_all([alice, bob, host])
        session.flush()
        for i in range(5):
            session.add(Guest(name=f"g{i}", live_name=f"g{i}", domain_name=f"g{i}", host_id=host.id,
                              owner_id=alice.id if i < 3 else bob.id, state="running", step="ready"))
    yield database
    database.dispose()


ADMIN = Actor(None, "root", is_admin=True)
ALICE = Actor(1, "alice")


def _names(answer) -> list[str]:
    return [g["name"] for g in json.loads(answer.body)["guests"]]


def _pause(session, name):
    session.execute(update(Guest).where(Guest.name == name).values(state="paused"))


async def test_served_again_while_nothing_changes(db):
    cache = GuestListCache(db, recent_s=0, fingerprint_ttl=0)
    first = await cache.get(ADMIN, GuestFilter())
    second = await cache.get(ADMIN, GuestFilter())
    assert second is first and cache.builds == 1 and cache.hits == 1
    assert _names(first) == ["g0", "g1", "g2", "g3", "g4"]
    assert first.etag.startswith('"') and len(first.etag) == 42


async def test_visibility_and_filters_are_separate_answers(db):
    cache = GuestListCache(db, recent_s=0, fingerprint_ttl=0)
    assert _names(await cache.get(ALICE, GuestFilter())) == ["g0", "g1", "g2"]
    assert _names(await cache.get(ADMIN, GuestFilter(owner="bob"))) == ["g3", "g4"]
    assert _names(await cache.get(ADMIN, GuestFilter(limit=2, offset=1))) == ["g1", "g2"]
    assert cache.builds == 3


async def test_a_change_in_this_process_is_seen_at_once(db):
    cache = GuestListCache(db, recent_s=0, fingerprint_ttl=0)
    await cache.get(ADMIN, GuestFilter())
    await db.run(_pause, "g1")  # a bulk UPDATE through this process's sessions
    answer = await cache.get(ADMIN, GuestFilter(state="paused"))
    assert _names(answer) == ["g1"]

    def rename_purpose(session):  # an ORM change: same hook
        session.query(Guest).filter_by(name="g2").one().purpose = "changed"

    before = cache.local_version
    await db.run(rename_purpose)
    assert cache.local_version == before + 1
    assert json.loads((await cache.get(ADMIN, GuestFilter())).body)["guests"][2]["purpose"] == "changed"


async def test_a_change_by_another_process_is_seen_through_the_fingerprint(db, tmp_path):
    # MariaDB's DATETIME keeps whole seconds: a change within the second of the newest stamp
    # leaves the fingerprint as it was, and only the RECENT_S rule keeps the answer fresh.
    whole_seconds = db.backend in ("mysql", "mariadb")
    cache = GuestListCache(db, recent_s=RECENT_S if whole_seconds else 0, fingerprint_ttl=0)
    await cache.get(ADMIN, GuestFilter())
    other = Database(db.url, threads=1)  # another process: its commits do not reach our hooks
    try:
        other.run_sync(_pause, "g3")
        version = cache.local_version
        answer = await cache.get(ADMIN, GuestFilter())
        assert cache.local_version == version
        assert json.loads(answer.body)["guests"][3]["state"] == "paused"

        def remove(session):
            session.delete(session.query(Guest).filter_by(name="g4").one())

        other.run_sync(remove)
        assert _names(await cache.get(ADMIN, GuestFilter())) == ["g0", "g1", "g2", "g3"]
    finally:
        other.dispose()


async def test_answers_built_right_after_a_change_are_not_reused(db):
    cache = GuestListCache(db, recent_s=3600, fingerprint_ttl=0)  # every row here changed within the last hour
    await cache.get(ADMIN, GuestFilter())
    await cache.get(ADMIN, GuestFilter())
    assert cache.builds == 2 and cache.hits == 0


async def test_concurrent_requests_share_one_build(db):
    cache = GuestListCache(db, recent_s=0, fingerprint_ttl=0)
    answers = await asyncio.gather(*(cache.get(ADMIN, GuestFilter()) for _ in range(16)))
    assert cache.builds == 1
    assert all(a is answers[0] for a in answers)


async def test_memory_is_bounded(db):
    first = GuestListCache(db, recent_s=0, fingerprint_ttl=0)
    size = len((await first.get(ADMIN, GuestFilter())).body)
    cache = GuestListCache(db, recent_s=0, fingerprint_ttl=0, max_bytes=size * 2 + 10)
    for offset in range(4):
        await cache.get(ADMIN, GuestFilter(offset=offset))
    assert cache._bytes <= cache.max_bytes and len(cache._answers) <= 3


async def test_a_failed_build_raises_for_every_waiter_and_is_not_kept(db):
    cache = GuestListCache(db, recent_s=0, fingerprint_ttl=0)
    from fogmachine.errors import ValidationError

    with pytest.raises(ValidationError):
        await cache.get(ADMIN, GuestFilter(limit=0))
    assert cache._answers == {} and cache._building == {}


async def test_the_fingerprint_is_read_once_per_interval_and_shared(db):
    cache = GuestListCache(db, recent_s=0, fingerprint_ttl=3600)
    await asyncio.gather(*(cache.get(ADMIN, GuestFilter()) for _ in range(8)))
    for _ in range(8):
        await cache.get(ADMIN, GuestFilter())
    assert cache.fingerprints == 1 and cache.builds == 1
    # Within the interval another process's change is not seen yet; this process's own is, at once.
    other = Database(db.url, threads=1)
    try:
        other.run_sync(_pause, "g0")
        assert json.loads((await cache.get(ADMIN, GuestFilter())).body)["guests"][0]["state"] == "running"
    finally:
        other.dispose()
    await db.run(_pause, "g1")
    guests = json.loads((await cache.get(ADMIN, GuestFilter())).body)["guests"]
    assert guests[0]["state"] == "paused" and guests[1]["state"] == "paused"
