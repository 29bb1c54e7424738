"""Throttling of password guesses, counted from the audit log that every process shares.

Every failed login is already written to the audit log (action ``user.login``,
result ``failed``, the normalized username and the client's address), and
every success too; so are wrong current passwords on a password change
(``user.password`` failed) and self-registrations (``user.register``).
Counting those rows, rather than keeping counts in each process's memory,
means that several Fogmachine processes behind one balancer throttle
together, and a restart forgets nothing; it costs a few indexed reads per
attempt and no write of its own (migration 0003 adds the indexes).

The rule (documented in the README), within a sliding window of 15 minutes:

* **Per account and address:** 5 failures for one username from one address
  lock that pair (429) until the oldest of them leaves the window. A success
  from that pair ends its count.
* **Per address:** 20 failures from one address, whatever the names, lock
  that address. A success does not end it: one valid account must not reset
  an address that guesses at others.
* **Per account, from everywhere: a delay, never a lock.** Once an account
  has 5 failures since its last success within the window, every further
  attempt on it is answered only after a delay that doubles with each failure
  (1 s, 2 s, 4 s, ... at most 10 s); the password is still checked and a right
  one still logs in. So guessing one account from many addresses is slowed,
  but nobody can lock the owner out of their account, the administrator's
  included: before, 5 failures from anywhere locked any account for 15
  minutes, again and again.

A wrong current password on ``POST /api/v1/users/me/password`` (and the
profile page) counts per account and address like logins (5 in 15 minutes).
Self-registration is limited per address: 10 attempts an hour, successful or
not. Registration must say that a name is taken (people choose their names),
so instead of hiding that, the limit keeps it from being an enumeration oracle:
10 names an hour per address, where logins answer alike for unknown names.

The checks come before the password is verified, so a locked-out attacker
does not even cost an Argon2 computation; 429 answers are not recorded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from fogmachine.db.models import AuditEvent

LOGIN = "user.login"
PASSWORD_CHANGE = "user.password"
REGISTER = "user.register"


@dataclass(frozen=True)
class Limits:
    window: dt.timedelta = dt.timedelta(minutes=15)
    per_pair: int = 5
    per_address: int = 20
    # The per-account delay: from this many failures on, 2**(n - from) seconds, at most max_delay.
    delay_from: int = 5
    max_delay: float = 10.0
    password_per_pair: int = 5
    register_window: dt.timedelta = dt.timedelta(hours=1)
    register_per_address: int = 10


DEFAULT = Limits()


@dataclass(frozen=True)
class Verdict:
    """Seconds to refuse for (429), and seconds to hold the answer for (the per-account delay)."""

    retry_after: float = 0.0
    delay: float = 0.0


def _lock_wait(session: Session, conditions: list[ColumnElement[bool]], limit: int, window: dt.timedelta,
               now: dt.datetime) -> float:
    """Seconds until the limit-th most recent matching row leaves the window; 0 if there are fewer."""
    oldest_counted = session.scalar(select(AuditEvent.at).where(*conditions)
                                    .order_by(AuditEvent.at.desc()).offset(limit - 1).limit(1))
    if oldest_counted is None:
        return 0.0
    return max(0.0, (oldest_counted + window - now).total_seconds())


def _last_success(session: Session, action: str, username: str, since: dt.datetime,
                  address: str | None = None) -> dt.datetime:
    query = select(func.max(AuditEvent.at)).where(AuditEvent.action == action, AuditEvent.result == "ok",
                                                  AuditEvent.object_name == username, AuditEvent.at > since)
    if address is not None:
        query = query.where(AuditEvent.remote_addr == address)
    last = session.scalar(query)
    return max(since, last) if last is not None else since


def check_login(session: Session, username: str, address: str, now: dt.datetime,
                limits: Limits = DEFAULT) -> Verdict:
    """What a login attempt for ``username`` from ``address`` must wait (see the module's rule)."""
    since = now - limits.window
    failed = [AuditEvent.action == LOGIN, AuditEvent.result == "failed"]
    pair_from = _last_success(session, LOGIN, username, since, address)
    wait = max(
        _lock_wait(session, [*failed, AuditEvent.object_name == username, AuditEvent.remote_addr == address,
                             AuditEvent.at > pair_from], limits.per_pair, limits.window, now),
        _lock_wait(session, [*failed, AuditEvent.remote_addr == address, AuditEvent.at > since],
                   limits.per_address, limits.window, now),
    )
    if wait > 0:
        return Verdict(retry_after=wait)
    account_from = _last_success(session, LOGIN, username, since)
    failures = session.scalar(select(func.count()).select_from(
        select(AuditEvent.id).where(*failed, AuditEvent.object_name == username, AuditEvent.at > account_from)
        .limit(limits.delay_from + 16).subquery())) or 0
    if failures < limits.delay_from:
        return Verdict()
    return Verdict(delay=min(limits.max_delay, float(2 ** (failures - limits.delay_from))))


def retry_after(session: Session, username: str, address: str, now: dt.datetime, limits: Limits = DEFAULT) -> float:
    """Seconds until ``username`` may try again from ``address``; 0 when it may now."""
    return check_login(session, username, address, now, limits).retry_after


def password_change_wait(session: Session, username: str, address: str, now: dt.datetime,
                         limits: Limits = DEFAULT) -> float:
    """Seconds until this account may try its current password again from this address."""
    since = now - limits.window
    start = _last_success(session, PASSWORD_CHANGE, username, since, address)
    return _lock_wait(session, [AuditEvent.action == PASSWORD_CHANGE, AuditEvent.result == "failed",
                                AuditEvent.object_name == username, AuditEvent.remote_addr == address,
                                AuditEvent.at > start], limits.password_per_pair, limits.window, now)


def register_wait(session: Session, address: str, now: dt.datetime, limits: Limits = DEFAULT) -> float:
    """Seconds until this address may try to register again (every attempt counts)."""
    return _lock_wait(session, [AuditEvent.action == REGISTER, AuditEvent.result.in_(("ok", "failed")),
                                AuditEvent.remote_addr == address,
                                AuditEvent.at > now - limits.register_window],
                      limits.register_per_address, limits.register_window, now)
