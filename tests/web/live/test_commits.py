"""The commit hooks that wake the live feed, on each database: which commits wake it, and only after COMMIT."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, update

from fogmachine.db.models import AuditEvent, Guest, Host, UserSession, utcnow
from fogmachine.db.session import Database
from fogmachine.services.users import create_user
from fogmachine.web.live.commits import PEOPLE, ROWS, CommitWatch
from tests.web.pages.conftest import password_hash


@pytest.fixture
def db(database_url):
    from fogmachine.db import migrate

    database = Database(database_url, threads=2)
    migrate.ensure_schema(database.engine)
    yield database
    database.dispose()


def _guest(session, user_id: int, host_id: int, name: str) -> int:
    guest = Guest(name=name, live_name=name, domain_name=name, owner_id=user_id, host_id=host_id, target="tiny",
                  target_kind="local", ram_mb=256, vcpus=1, purpose="tests", state="running", step="ready",
                  expires_at=utcnow() + dt.timedelta(days=1))
    session.add(guest)
    session.flush()
    return guest.id


def test_commits_that_change_guests_hosts_users_or_sessions_wake_it_once_each(db):
    user = db.run_sync(create_user, "alice", "x", password_hash=password_hash())
    host_id = db.run_sync(lambda s: (s.add(h := Host(name="h1", uri="test:///default", virt_type="test")),
                                     s.flush(), h.id)[2])
    woken: list[frozenset[str]] = []
    watch = CommitWatch(db.sessionmaker, woken.append)
    try:
        gid = db.run_sync(_guest, user.id, host_id, "web1")  # an ORM insert, flushed
        assert woken == [{ROWS}]
        db.run_sync(lambda s: setattr(s.get(Guest, gid), "ip", "10.0.0.5"))  # an ORM change
        # hoststate's way: a Core UPDATE of the table, through the session
        db.run_sync(lambda s: s.execute(update(Guest.__table__).where(Guest.__table__.c.id == gid)
                                        .values(state="paused")))
        db.run_sync(lambda s: s.execute(update(Host).where(Host.id == host_id).values(state_reason="x")))
        assert woken == [{ROWS}] * 4
        db.run_sync(lambda s: s.execute(update(UserSession).values(end_reason="x")))  # a logout's kind
        db.run_sync(lambda s: setattr(s.get(type(user), user.id), "is_active", False))
        assert woken[4:] == [{PEOPLE}, {PEOPLE}]

        def both(s):
            s.get(Guest, gid).ip = "10.0.0.6"
            s.execute(update(UserSession).values(end_reason="y"))

        db.run_sync(both)
        assert woken[6:] == [{ROWS, PEOPLE}]
        del woken[:]
        db.run_sync(lambda s: s.add(AuditEvent(action="tests.nothing", actor_name="tests")))  # not watched
        db.run_sync(lambda s: s.get(Guest, gid))  # a read commits nothing worth a wake
        assert woken == []

        def fails(s):
            s.get(Guest, gid).ip = "10.9.9.9"
            s.flush()
            raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            db.run_sync(fails)
        db.run_sync(lambda s: s.get(Guest, gid))  # the rolled-back session's note did not outlive it
        assert woken == []
    finally:
        watch.close()
    assert not watch.watching and not event.contains(db.sessionmaker, "after_commit", watch._after_commit)
    db.run_sync(lambda s: setattr(s.get(Guest, gid), "ip", "10.0.0.7"))
    assert woken == []  # unhooked: nothing calls it any more


def test_the_wake_comes_after_the_commit_so_another_connection_sees_the_change(db):
    user = db.run_sync(create_user, "alice", "x", password_hash=password_hash())
    host_id = db.run_sync(lambda s: (s.add(h := Host(name="h1", uri="test:///default", virt_type="test")),
                                     s.flush(), h.id)[2])
    gid = db.run_sync(_guest, user.id, host_id, "web1")
    other = Database(db.url, threads=1)  # the feed's read runs on a connection of its own
    seen: list[str | None] = []
    watch = CommitWatch(db.sessionmaker, lambda kinds: seen.append(other.run_sync(lambda s: s.get(Guest, gid).ip)))
    try:
        db.run_sync(lambda s: setattr(s.get(Guest, gid), "ip", "10.0.0.5"))
    finally:
        watch.close()
        other.dispose()
    assert seen == ["10.0.0.5"]
