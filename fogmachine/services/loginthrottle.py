"""Login throttling, counted from the audit log that every process shares.

Every failed login is already written to the audit log (action ``user.login``,
result ``failed``, the username and the client's address), and every success
too. Counting those rows, rather than keeping counts in each process's
memory, means that several Fogmachine processes behind one balancer throttle
together, and a restart forgets nothing; it costs one indexed read per login
attempt and no write of its own (migration 0003 adds the two indexes).

The rule (documented in the README): within a sliding window of 15 minutes,
5 failed logins for one username, or 20 from one address, lock that username
or address out until the oldest of those failures leaves the window. A
successful login ends the username's count (failures before it no longer
count), but not the address's: one valid account must not reset an address
that is guessing at others. The check comes before the password is verified,
so a locked-out attacker does not even cost an Argon2 computation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fogmachine.db.models import AuditEvent

ACTION = "user.login"


@dataclass(frozen=True)
class Limits:
    window: dt.timedelta = dt.timedelta(minutes=15)
    per_user: int = 5
    per_address: int = 20


DEFAULT = Limits()


def retry_after(session: Session, username: str, address: str, now: dt.datetime, limits: Limits = DEFAULT) -> float:
    """Seconds until ``username`` may try again from ``address``; 0 when it may now."""
    since = now - limits.window
    logins = select(AuditEvent.at).where(AuditEvent.action == ACTION)
    last_success = session.scalar(
        select(func.max(AuditEvent.at)).where(AuditEvent.action == ACTION, AuditEvent.result == "ok",
                                              AuditEvent.object_name == username, AuditEvent.at > since))
    user_from = max(since, last_success) if last_success is not None else since
    wait = 0.0
    for column, key, start, limit in ((AuditEvent.object_name, username, user_from, limits.per_user),
                                      (AuditEvent.remote_addr, address, since, limits.per_address)):
        # The limit-th most recent failure: the lock lasts until it leaves the window.
        oldest_counted = session.scalar(
            logins.where(AuditEvent.result == "failed", column == key, AuditEvent.at > start)
            .order_by(AuditEvent.at.desc()).offset(limit - 1).limit(1))
        if oldest_counted is not None:
            wait = max(wait, (oldest_counted + limits.window - now).total_seconds())
    return wait
