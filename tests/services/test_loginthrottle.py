"""The login throttle's rule, counted from audit rows on each database backend."""

import datetime as dt

import pytest

from fogmachine.db import migrate
from fogmachine.db.models import AuditEvent
from fogmachine.db.session import Database
from fogmachine.services import loginthrottle
from fogmachine.services.loginthrottle import Limits

NOW = dt.datetime(2026, 11, 25, 12, 0, 0)  # whole seconds: MariaDB keeps no fractions
LIMITS = Limits(window=dt.timedelta(seconds=60), per_user=3, per_address=5)


@pytest.fixture
def db(database_url):
    database = Database(database_url, threads=2)
    migrate.ensure_schema(database.engine)
    yield database
    database.dispose()


def login(db, username, address, *, ok=False, seconds_ago=0):
    with db.session() as s:
        s.add(AuditEvent(at=NOW - dt.timedelta(seconds=seconds_ago), action="user.login", object_type="user",
                         object_name=username, remote_addr=address, result="ok" if ok else "failed"))


def wait(db, username, address, now=NOW):
    with db.session() as s:
        return loginthrottle.retry_after(s, username, address, now, LIMITS)


def test_per_user_from_anywhere_and_per_address_for_every_name(db):
    for ago in (30, 20, 10):
        assert wait(db, "ann", "10.0.0.1") == 0
        login(db, "ann", "10.0.0.1", seconds_ago=ago)
    assert wait(db, "ann", "10.0.0.1") == pytest.approx(30)  # until the oldest of the three is 60 s old
    assert wait(db, "ann", "10.9.9.9") > 0  # the user is locked from anywhere
    assert wait(db, "bob", "10.0.0.1") == 0  # the address is not (yet)
    login(db, "bob", "10.0.0.1", seconds_ago=5)
    login(db, "cat", "10.0.0.1", seconds_ago=5)
    assert wait(db, "dan", "10.0.0.1") > 0  # 5 from one address: locked for every name
    assert wait(db, "dan", "10.0.0.2") == 0
    later = NOW + dt.timedelta(seconds=31)
    assert wait(db, "ann", "10.9.9.9", later) == 0  # the window slid past the oldest


def test_a_success_ends_the_users_count_not_the_addresses(db):
    for ago in (50, 40):
        login(db, "eve", "10.0.0.3", seconds_ago=ago)
    login(db, "eve", "10.0.0.4", ok=True, seconds_ago=35)
    login(db, "eve", "10.0.0.3", seconds_ago=30)
    assert wait(db, "eve", "10.0.0.5") == 0  # only one failure since the success
    for ago in (20, 10):
        login(db, "eve", "10.0.0.3", seconds_ago=ago)
    assert wait(db, "eve", "10.0.0.5") == pytest.approx(30)
    for name in ("x", "y"):
        login(db, name, "10.0.0.3", seconds_ago=1)
    assert wait(db, "zed", "10.0.0.3") > 0  # all of the address's failures count, the success changed nothing


def test_other_audit_rows_do_not_count(db):
    with db.session() as s:
        for _ in range(10):
            s.add(AuditEvent(at=NOW, action="guest.start", object_name="ann", remote_addr="10.0.0.1", result="failed"))
    assert wait(db, "ann", "10.0.0.1") == 0
