"""The throttle's rules, counted from audit rows on each database backend."""

import datetime as dt

import pytest

from fogmachine.db import migrate
from fogmachine.db.models import AuditEvent
from fogmachine.db.session import Database
from fogmachine.services import loginthrottle
from fogmachine.services.loginthrottle import Limits

NOW = dt.datetime(2026, 11, 25, 12, 0, 0)  # whole seconds: MariaDB keeps no fractions
LIMITS = Limits(window=dt.timedelta(seconds=60), per_pair=3, per_address=5, delay_from=4, max_delay=10,
                password_per_pair=2, register_window=dt.timedelta(seconds=120), register_per_address=3)


@pytest.fixture
def db(database_url):
    database = Database(database_url, threads=2)
    migrate.ensure_schema(database.engine)
    yield database
    database.dispose()


def event(db, username, address, *, ok=False, seconds_ago=0, action="user.login"):
    with db.session() as s:
        s.add(AuditEvent(at=NOW - dt.timedelta(seconds=seconds_ago), action=action, object_type="user",
                         object_name=username, remote_addr=address, result="ok" if ok else "failed"))


def verdict(db, username, address, now=NOW):
    with db.session() as s:
        return loginthrottle.check_login(s, username, address, now, LIMITS)


def test_per_pair_and_per_address_locks(db):
    for ago in (30, 20, 10):
        assert verdict(db, "ann", "10.0.0.1").retry_after == 0
        event(db, "ann", "10.0.0.1", seconds_ago=ago)
    assert verdict(db, "ann", "10.0.0.1").retry_after == pytest.approx(30)  # until the oldest is 60 s old
    assert verdict(db, "ann", "10.9.9.9") == loginthrottle.Verdict()  # the account is not locked elsewhere
    assert verdict(db, "bob", "10.0.0.1").retry_after == 0  # nor the address, yet
    event(db, "bob", "10.0.0.1", seconds_ago=5)
    event(db, "cat", "10.0.0.1", seconds_ago=5)
    assert verdict(db, "dan", "10.0.0.1").retry_after > 0  # 5 from one address: locked for every name
    assert verdict(db, "dan", "10.0.0.2").retry_after == 0
    later = NOW + dt.timedelta(seconds=31)
    assert verdict(db, "ann", "10.0.0.1", later).retry_after == 0  # the window slid past the oldest


def test_a_success_ends_the_pairs_count_not_the_addresses(db):
    for ago in (50, 40):
        event(db, "eve", "10.0.0.3", seconds_ago=ago)
    event(db, "eve", "10.0.0.3", ok=True, seconds_ago=35)
    event(db, "eve", "10.0.0.3", seconds_ago=30)
    assert verdict(db, "eve", "10.0.0.3").retry_after == 0  # only one failure since the success
    for ago in (20, 10):
        event(db, "eve", "10.0.0.3", seconds_ago=ago)
    assert verdict(db, "eve", "10.0.0.3").retry_after == pytest.approx(30)
    for name in ("x", "y"):
        event(db, name, "10.0.0.3", seconds_ago=1)
    assert verdict(db, "zed", "10.0.0.3").retry_after > 0  # the address's failures all count


def test_many_addresses_slow_an_account_down_but_never_lock_it(db):
    for i in range(6):  # six addresses, two failures each: no pair and no address is locked
        for ago in (40, 30):
            event(db, "adm", f"10.2.0.{i}", seconds_ago=ago - i)
    owner = verdict(db, "adm", "10.9.9.9")
    assert owner.retry_after == 0 and owner.delay == 10  # 12 failures: 2**(12-4) s, capped
    event(db, "adm", "10.9.9.9", ok=True, seconds_ago=1)
    assert verdict(db, "adm", "10.9.9.8") == loginthrottle.Verdict()  # a success ends the backoff
    for i in range(4):
        event(db, "adm", f"10.3.0.{i}")
    assert verdict(db, "adm", "10.9.9.8").delay == 1  # 4 failures since: 2**0


def test_wrong_current_passwords_and_registrations(db):
    with db.session() as s:
        assert loginthrottle.password_change_wait(s, "fay", "10.0.0.7", NOW, LIMITS) == 0
    for ago in (20, 10):
        event(db, "fay", "10.0.0.7", seconds_ago=ago, action="user.password")
    with db.session() as s:
        assert loginthrottle.password_change_wait(s, "fay", "10.0.0.7", NOW, LIMITS) == pytest.approx(40)
        assert loginthrottle.password_change_wait(s, "fay", "10.0.0.8", NOW, LIMITS) == 0
        assert loginthrottle.check_login(s, "fay", "10.0.0.7", NOW, LIMITS) == loginthrottle.Verdict()
    for i, ok in enumerate((True, False, True)):
        with db.session() as s:
            assert loginthrottle.register_wait(s, "10.0.0.9", NOW, LIMITS) == 0
        event(db, f"new{i}", "10.0.0.9", ok=ok, seconds_ago=60 - i, action="user.register")
    with db.session() as s:
        assert loginthrottle.register_wait(s, "10.0.0.9", NOW, LIMITS) == pytest.approx(60)
        assert loginthrottle.register_wait(s, "10.0.0.10", NOW, LIMITS) == 0


def test_other_audit_rows_do_not_count(db):
    with db.session() as s:
        for _ in range(10):
            s.add(AuditEvent(at=NOW, action="guest.start", object_name="ann", remote_addr="10.0.0.1", result="failed"))
    assert verdict(db, "ann", "10.0.0.1") == loginthrottle.Verdict()
