"""Units of work on every database: a deadlock's victim is run again, not lost.

MariaDB chose the unit that marks a failed guest as the victim of a deadlock with a host resync (it
checks the host row's key while the resync holds the host row and waits for the guest row), and the
guest stayed "booting" for good. Here two real transactions lock two rows in opposite orders.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.db import migrate
from fogmachine.db.models import User
from fogmachine.db.session import Database, is_deadlock


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, threads=2)
    migrate.ensure_schema(database.engine)
    yield database
    database.dispose()


def _add_users(db: Database, *names: str) -> list[int]:
    def add(session: Session) -> list[int]:
        users = [User(username=name, email="") for name in names]
        session.add_all(users)
        session.flush()
        return [user.id for user in users]

    return db.run_sync(add)


@pytest.mark.parametrize("in_savepoint", [False, True], ids=["plain", "in-savepoint"])
def test_two_units_that_lock_in_opposite_orders_both_commit(db: Database, caplog: pytest.LogCaptureFixture,
                                                            in_savepoint: bool) -> None:
    """Also when the lock that closes the cycle is taken inside a savepoint: MariaDB then rolls the whole
    transaction back, and the savepoint's rollback fails with 1305, which must still be known for a deadlock."""
    first, second = _add_users(db, "ann", "bob")
    both_hold_one = threading.Barrier(2, timeout=20)
    errors: list[BaseException] = []

    def unit(order: tuple[int, int], label: str) -> None:
        attempts = 0

        def lock_and_write(session: Session, user_id: int) -> None:
            user = session.scalar(select(User).where(User.id == user_id).with_for_update())
            assert user is not None
            user.email = f"{user.email}{label}"
            session.flush()

        def work(session: Session) -> None:
            nonlocal attempts
            attempts += 1
            lock_and_write(session, order[0])
            if attempts == 1 and db.backend != "sqlite":
                both_hold_one.wait()  # each holds its first row: the second lock closes the cycle
            if in_savepoint:
                with session.begin_nested():
                    lock_and_write(session, order[1])
            else:
                lock_and_write(session, order[1])

        try:
            # SQLite has no row locks: lock=True serializes the two units instead (no deadlock to lose).
            db.run_sync(work, lock=db.backend == "sqlite")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    caplog.set_level(logging.INFO, logger="fogmachine.db.session")
    threads = [threading.Thread(target=unit, args=((first, second), "a")),
               threading.Thread(target=unit, args=((second, first), "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    emails = db.run_sync(lambda s: sorted(u.email for u in s.scalars(select(User).order_by(User.id))))
    assert all(sorted(email) == ["a", "b"] for email in emails)  # each unit wrote each row exactly once
    if db.backend != "sqlite":
        assert "lost a deadlock" in caplog.text  # the cycle really closed, and its victim ran again


def test_other_database_errors_are_not_taken_for_deadlocks(db: Database) -> None:
    _add_users(db, "carol")
    with pytest.raises(Exception) as raised:
        _add_users(db, "carol")  # a duplicate name: an IntegrityError, raised at once, never retried
    assert not is_deadlock(raised.value)
