"""Leases on the real databases: one holder at a time, taken over after expiry."""

import datetime as dt

from sqlalchemy import update

from fogmachine.db import migrate
from fogmachine.db.models import TaskLease, utcnow
from fogmachine.db.session import Database
from fogmachine.services import leases


def test_one_holder_renewal_and_takeover(database_url):
    db = Database(database_url, threads=2)
    migrate.ensure_schema(db.engine)
    try:
        assert db.run_sync(leases.try_acquire, "task:x", "p1", 30)
        assert not db.run_sync(leases.try_acquire, "task:x", "p2", 30)
        assert db.run_sync(leases.try_acquire, "task:x", "p1", 30)  # renewal, even within the same second
        assert db.run_sync(leases.try_acquire, "task:x", "p1", 30)
        # p1 dies: its lease runs out, p2 takes over
        with db.session() as s:
            s.execute(update(TaskLease).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
        assert db.run_sync(leases.try_acquire, "task:x", "p2", 30)
        assert not db.run_sync(leases.try_acquire, "task:x", "p1", 30)
        db.run_sync(leases.release, "task:x", "p2")
        assert db.run_sync(leases.try_acquire, "task:x", "p1", 30)
    finally:
        db.dispose()


def test_live_processes(database_url):
    db = Database(database_url, threads=2)
    migrate.ensure_schema(db.engine)
    try:
        db.run_sync(leases.try_acquire, "process:a", "a", 30)
        db.run_sync(leases.try_acquire, "process:b", "b", 30)
        with db.session() as s:
            s.execute(update(TaskLease).where(TaskLease.name == "process:b")
                      .values(expires_at=utcnow() - dt.timedelta(seconds=1)))
        assert db.run_sync(leases.live_processes) == {"a"}
    finally:
        db.dispose()
