"""Server-side login sessions: a random id in the cookie, its SHA-256 in the ``sessions`` table.

Why server-side: a cookie that merely signs a user id stays valid until it
expires, whatever happens; logging out, changing the password or disabling the
account could not end it. Here the cookie holds 32 random bytes
(``secrets.token_urlsafe``); the table holds only their SHA-256, so a copy of
the database lets nobody log in. Every request looks its session up (one
indexed read joined to the user, which the old cookie needed too), so an
ended session stops working at once in every process sharing the database.

Lifetimes (settings): a session ends after ``session_idle_minutes`` without a
request and ``session_max_days`` after it began, whatever its use. Both are
checked on every read against ``last_seen_at`` and ``created_at``, so
changing a setting applies to existing sessions too. ``last_seen_at`` is
written at most once a minute per session (``TOUCH_EVERY``), not per request:
the idle lifetime is counted in minutes anyway.

Ending a session (logout, "log out" on the profile, a password change for the
other sessions, an account disabled) stamps ``ended_at`` and ``end_reason``;
the row stays until the periodic ``purge`` (hourly, see ``tasks.py``) deletes
rows that ended or expired more than ``KEEP_ENDED`` ago. Reads never delete:
a GET stays a read, and an expired row is simply not accepted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.db.models import User, UserSession, utcnow
from fogmachine.errors import NotFound
from fogmachine.services import audit
from fogmachine.services.actor import Actor

TOUCH_EVERY = dt.timedelta(minutes=1)
KEEP_ENDED = dt.timedelta(days=1)
MAX_USER_AGENT = 255
MAX_ADDRESS = 64
MAX_TOKEN = 128  # what a cookie value may be before it is even hashed


@dataclass(frozen=True)
class Lifetimes:
    idle: dt.timedelta
    absolute: dt.timedelta

    @classmethod
    def of(cls, config: Config) -> Lifetimes:
        return cls(idle=dt.timedelta(minutes=config.session_idle_minutes),
                   absolute=dt.timedelta(days=config.session_max_days))


@dataclass(frozen=True)
class SessionView:
    """One session as its owner sees it on the profile page."""

    id: int
    created_at: dt.datetime
    last_seen_at: dt.datetime
    remote_addr: str
    user_agent: str
    current: bool


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def clean_text(text: str, limit: int) -> str:
    """Client text fit to store and show: control characters dropped, length bounded."""
    return "".join(c for c in text if c.isprintable())[:limit]


def start(session: Session, user_id: int, remote_addr: str, user_agent: str) -> tuple[UserSession, str]:
    """A new session for the user; returns the row and the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = UserSession(user_id=user_id, token_hash=hash_token(token), created_at=now, last_seen_at=now,
                      remote_addr=clean_text(remote_addr, MAX_ADDRESS),
                      user_agent=clean_text(user_agent, MAX_USER_AGENT))
    session.add(row)
    session.flush()
    return row, token


def _alive(lifetimes: Lifetimes, now: dt.datetime) -> list[ColumnElement[bool]]:
    return [UserSession.ended_at.is_(None), UserSession.last_seen_at > now - lifetimes.idle,
            UserSession.created_at > now - lifetimes.absolute]


def lookup(session: Session, token: str, lifetimes: Lifetimes) -> tuple[User, int] | None:
    """The active user and the session id behind a cookie's token, or None.

    None for an unknown, ended, idle or too old session and for a disabled
    user. Touches ``last_seen_at`` when it is older than ``TOUCH_EVERY``.
    """
    if not token or len(token) > MAX_TOKEN:
        return None
    now = utcnow()
    row = session.execute(
        select(UserSession.id, UserSession.last_seen_at, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == hash_token(token), User.is_active.is_(True), *_alive(lifetimes, now))
    ).first()
    if row is None:
        return None
    session_id, last_seen, user = row
    if now - last_seen >= TOUCH_EVERY:
        # Conditional, so two processes touching at once write once; a lost race is harmless.
        session.execute(update(UserSession).where(UserSession.id == session_id,
                                                  UserSession.last_seen_at == last_seen)
                        .values(last_seen_at=now))
    session.expunge(user)
    return user, session_id


def still_alive(session: Session, session_ids: tuple[int, ...], lifetimes: Lifetimes) -> set[int]:
    """Which of these sessions are still active (the live feed closes the sockets of the others)."""
    return set(session.scalars(select(UserSession.id).where(UserSession.id.in_(session_ids),
                                                            *_alive(lifetimes, utcnow()))))


def list_for(session: Session, actor: Actor, lifetimes: Lifetimes) -> list[SessionView]:
    """The actor's own active sessions, the most recently used first."""
    if actor.user_id is None:
        return []
    rows = session.scalars(select(UserSession).where(UserSession.user_id == actor.user_id,
                                                     *_alive(lifetimes, utcnow()))
                           .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc()))
    return [SessionView(r.id, r.created_at, r.last_seen_at, r.remote_addr, r.user_agent,
                        r.id == actor.session_id) for r in rows]


def _end(session: Session, condition: ColumnElement[bool], reason: str) -> int:
    result = session.execute(update(UserSession).where(condition, UserSession.ended_at.is_(None))
                             .values(ended_at=utcnow(), end_reason=reason))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def end_current(session: Session, actor: Actor) -> None:
    """Logging out: the session this request came with ends (audited with the logout)."""
    if actor.session_id is None:
        return
    if _end(session, UserSession.id == actor.session_id, "logout"):
        audit.record(session, actor, "user.logout", object_type="user", object_id=actor.user_id,
                     object_name=actor.username)


def end_one(session: Session, actor: Actor, session_id: int) -> None:
    """The actor ends one of their own sessions (someone else's answers 404, as if absent)."""
    actor.require_write()
    owner = session.scalar(select(UserSession.user_id).where(UserSession.id == session_id))
    if owner is None or owner != actor.user_id:
        raise NotFound(f"no session with id {session_id}")
    ended = _end(session, UserSession.id == session_id, "logout")
    audit.record(session, actor, "session.end", object_type="session", object_id=session_id,
                 object_name=actor.username, message="this session" if session_id == actor.session_id else
                 ("" if ended else "already ended"))


def end_all(session: Session, actor: Actor) -> int:
    """"Log out everywhere": every session of the actor, this one included."""
    actor.require_write()
    if actor.user_id is None:
        return 0
    ended = _end(session, UserSession.user_id == actor.user_id, "logout everywhere")
    audit.record(session, actor, "session.end_all", object_type="user", object_id=actor.user_id,
                 object_name=actor.username, message=f"{ended} session(s)")
    return ended


def end_for_user(session: Session, user_id: int, reason: str, keep: int | None = None) -> int:
    """Every session of a user, except ``keep``: a password change (keep the one that made it)
    or an account disabled (keep none). The caller's own audit line says why."""
    condition = UserSession.user_id == user_id
    if keep is not None:
        condition = condition & (UserSession.id != keep)
    return _end(session, condition, reason)


def purge(session: Session, lifetimes: Lifetimes) -> int:
    """Delete the rows of sessions that ended or expired more than ``KEEP_ENDED`` ago."""
    now = utcnow()
    cutoff = now - KEEP_ENDED
    result = session.execute(delete(UserSession).where(or_(
        UserSession.ended_at < cutoff,
        UserSession.last_seen_at < cutoff - lifetimes.idle,
        UserSession.created_at < cutoff - lifetimes.absolute)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
