"""The login-session service's writes on every database: start, look up, touch, end, purge."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from fogmachine import config as configmod
from fogmachine.db import migrate
from fogmachine.db.models import AuditEvent, User, UserSession, utcnow
from fogmachine.db.session import Database
from fogmachine.errors import NotFound
from fogmachine.services import sessions
from fogmachine.services.actor import Actor

LIFE = sessions.Lifetimes(idle=dt.timedelta(minutes=60), absolute=dt.timedelta(days=2))



def test_lifetimes_come_from_the_two_session_settings(tmp_path):
    config = configmod.load(None, environ={}, data_dir=str(tmp_path), session_idle_minutes="45", session_max_days="3")
    assert sessions.Lifetimes.of(config) == sessions.Lifetimes(idle=dt.timedelta(minutes=45),
                                                               absolute=dt.timedelta(days=3))

@pytest.fixture
def db(database_url):
    database = Database(database_url, threads=2)
    migrate.ensure_schema(database.engine)
    yield database
    database.dispose()


def add_user(db, name):
    def add(s):
        user = User(username=name, email="")
        s.add(user)
        s.flush()
        return user.id

    return db.run_sync(add)


def shift(db, session_id, **ago):
    """Move a session's stamps into the past, as time passing would."""
    values = {column: utcnow() - delta for column, delta in ago.items()}
    db.run_sync(lambda s: s.execute(update(UserSession).where(UserSession.id == session_id).values(**values)))


def row(db, session_id):
    return db.run_sync(lambda s: s.get(UserSession, session_id))


def test_start_stores_only_the_hash_and_cleans_client_text(db):
    uid = add_user(db, "ann")
    made, token = db.run_sync(sessions.start, uid, "10.0.0.1\n", "Mozilla\x1b[31m\r\nX-Evil: 1" + "x" * 400)
    stored = row(db, made.id)
    assert len(token) >= 43 and stored.token_hash == sessions.hash_token(token) and token not in stored.token_hash
    assert stored.user_agent.startswith("Mozilla[31mX-Evil: 1") and len(stored.user_agent) == 255
    assert stored.remote_addr == "10.0.0.1"
    user, sid = db.run_sync(sessions.lookup, token, LIFE)
    assert user.username == "ann" and sid == made.id
    assert db.run_sync(sessions.lookup, token + "x", LIFE) is None
    assert db.run_sync(sessions.lookup, "y" * 500, LIFE) is None


def test_last_seen_is_written_at_most_once_a_minute(db):
    uid = add_user(db, "bea")
    made, token = db.run_sync(sessions.start, uid, "", "")
    first = row(db, made.id).last_seen_at
    db.run_sync(sessions.lookup, token, LIFE)
    assert row(db, made.id).last_seen_at == first  # within the minute: no write
    shift(db, made.id, last_seen_at=dt.timedelta(minutes=5))
    before = row(db, made.id).last_seen_at
    db.run_sync(sessions.lookup, token, LIFE)
    assert row(db, made.id).last_seen_at > before


def test_idle_and_absolute_lifetimes_and_disabled_users(db):
    uid = add_user(db, "cy")
    idle, idle_token = db.run_sync(sessions.start, uid, "", "")
    old, old_token = db.run_sync(sessions.start, uid, "", "")
    fine, fine_token = db.run_sync(sessions.start, uid, "", "")
    shift(db, idle.id, last_seen_at=dt.timedelta(minutes=61))
    shift(db, old.id, created_at=dt.timedelta(days=2, minutes=1))
    assert db.run_sync(sessions.lookup, idle_token, LIFE) is None
    assert db.run_sync(sessions.lookup, old_token, LIFE) is None
    assert db.run_sync(sessions.lookup, fine_token, LIFE) is not None
    assert db.run_sync(sessions.still_alive, (idle.id, old.id, fine.id), LIFE) == {fine.id}
    db.run_sync(lambda s: setattr(s.get(User, uid), "is_active", False))
    assert db.run_sync(sessions.lookup, fine_token, LIFE) is None


def test_ending_one_all_and_all_but_one(db):
    uid, other = add_user(db, "dee"), add_user(db, "eli")
    rows = [db.run_sync(sessions.start, uid, "", "")[0] for _ in range(4)]
    theirs, _ = db.run_sync(sessions.start, other, "", "")
    me = Actor(uid, "dee", session_id=rows[0].id)
    listed = db.run_sync(sessions.list_for, me, LIFE)
    assert {v.id for v in listed} == {r.id for r in rows} and [v.id for v in listed if v.current] == [rows[0].id]
    with pytest.raises(NotFound):
        db.run_sync(sessions.end_one, me, theirs.id)  # someone else's: as if absent
    db.run_sync(sessions.end_one, me, rows[1].id)
    assert row(db, rows[1].id).ended_at is not None and row(db, theirs.id).ended_at is None
    assert db.run_sync(sessions.end_for_user, uid, "password changed", rows[0].id) == 2
    assert [v.id for v in db.run_sync(sessions.list_for, me, LIFE)] == [rows[0].id]
    assert row(db, rows[2].id).end_reason == "password changed"
    assert db.run_sync(sessions.end_all, me) == 1
    assert db.run_sync(sessions.list_for, me, LIFE) == []
    db.run_sync(sessions.end_current, Actor(other, "eli", session_id=theirs.id))
    assert row(db, theirs.id).end_reason == "logout"
    actions = db.run_sync(lambda s: sorted(s.scalars(select(AuditEvent.action).where(
        AuditEvent.action.in_(("session.end", "session.end_all", "user.logout"))))))
    assert actions == ["session.end", "session.end_all", "user.logout"]


def test_purge_deletes_only_long_ended_or_expired_rows(db):
    uid = add_user(db, "fay")
    ended, _ = db.run_sync(sessions.start, uid, "", "")
    fresh_end, _ = db.run_sync(sessions.start, uid, "", "")
    stale, _ = db.run_sync(sessions.start, uid, "", "")
    live, _ = db.run_sync(sessions.start, uid, "", "")
    db.run_sync(sessions.end_for_user, uid, "x", live.id)
    shift(db, ended.id, ended_at=dt.timedelta(days=2))
    shift(db, stale.id, last_seen_at=dt.timedelta(days=3), ended_at=dt.timedelta(hours=1))
    assert db.run_sync(sessions.purge, LIFE) == 2
    left = db.run_sync(lambda s: set(s.scalars(select(UserSession.id))))
    assert left == {fresh_end.id, live.id}
