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


def test_a_task_lease_ends_with_its_holders_heartbeat(database_url):
    """Issue 11: a killed process kept its reconcile lease for three intervals (15 minutes by default).
    A task lease is now free once its holder's heartbeat has expired, whatever time it had left; a live
    heartbeat keeps it; a holder with no heartbeat row at all keeps it until it expires (tools, tests)."""
    db = Database(database_url, threads=2)
    migrate.ensure_schema(db.engine)
    try:
        assert db.run_sync(leases.try_acquire, "process:dead", "dead", 15)
        assert db.run_sync(leases.try_acquire, "process:live", "live", 15)
        assert db.run_sync(leases.try_acquire, "task:reconcile", "dead", 900)
        assert not db.run_sync(leases.try_acquire, "task:reconcile", "live", 900)  # its holder still beats
        with db.session() as s:  # the holder is SIGKILLed: its heartbeat runs out (the task lease has 899 s left)
            s.execute(update(TaskLease).where(TaskLease.name == "process:dead")
                      .values(expires_at=utcnow() - dt.timedelta(seconds=1)))
        assert db.run_sync(leases.try_acquire, "task:reconcile", "live", 900)
        assert not db.run_sync(leases.try_acquire, "task:reconcile", "other", 900)  # now held by a live one
        with db.session() as s:
            row = s.get(TaskLease, "task:reconcile")
            assert row.owner == "live" and row.expires_at > utcnow() + dt.timedelta(seconds=800)
        # no heartbeat row at all: the lease's own expiry rules, as before
        assert db.run_sync(leases.try_acquire, "task:tool", "script", 900)
        assert not db.run_sync(leases.try_acquire, "task:tool", "live", 900)
    finally:
        db.dispose()
