"""Leases in the database: one process at a time for each periodic task.

Taking a lease is one conditional UPDATE (``owner = me OR expired``), which
every supported database executes atomically, so no advisory-lock dialect
differences leak in. Each process also renews a ``process:<id>`` lease as its
heartbeat; reconciliation reads those to tell work orphaned by a dead process.

A task lease dies with its holder: when the holder's heartbeat has expired
(15 s after a crash), another process takes the lease at once, whatever time
the lease itself had left (a reconcile lease lasts three intervals, 15 minutes
with the defaults). The take-over is a compare-and-swap on the holder read, so
two processes that both see the holder dead cannot both win. A holder with no
heartbeat row at all (a tool, a test) keeps the lease until it expires.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from typing import Any, cast

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fogmachine.db.models import TaskLease, utcnow

PROCESS_PREFIX = "process:"


def new_process_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def try_acquire(session: Session, name: str, owner: str, ttl: float) -> bool:
    """Take or renew lease ``name`` for ``ttl`` seconds; False when another live owner holds it."""
    now = utcnow()
    expires = now + dt.timedelta(seconds=ttl)
    result = cast(CursorResult[Any], session.execute(
        update(TaskLease)
        .where(TaskLease.name == name, or_(TaskLease.owner == owner, TaskLease.expires_at < now))
        .values(owner=owner, expires_at=expires)
        .execution_options(synchronize_session=False)
    ))
    if result.rowcount == 1:
        return True
    holder = session.scalar(select(TaskLease.owner).where(TaskLease.name == name))
    if holder is not None:
        if name.startswith(PROCESS_PREFIX) or not _heartbeat_stopped(session, holder, now):
            return False
        taken = cast(CursorResult[Any], session.execute(
            update(TaskLease)
            .where(TaskLease.name == name, TaskLease.owner == holder)
            .values(owner=owner, expires_at=expires)
            .execution_options(synchronize_session=False)
        ))
        return taken.rowcount == 1
    try:
        with session.begin_nested():
            session.add(TaskLease(name=name, owner=owner, expires_at=expires))
    except IntegrityError:  # another process inserted it first
        return False
    return True


def _heartbeat_stopped(session: Session, process: str, now: dt.datetime) -> bool:
    """True when ``process`` has a heartbeat lease and it expired: the process is dead (or cut off from the
    database for longer than the heartbeat's time to live, which for its leases comes to the same)."""
    beat = session.scalar(select(TaskLease.expires_at).where(TaskLease.name == f"{PROCESS_PREFIX}{process}"))
    return beat is not None and beat < now


def release(session: Session, name: str, owner: str) -> None:
    session.execute(delete(TaskLease).where(TaskLease.name == name, TaskLease.owner == owner))


def live_processes(session: Session) -> set[str]:
    """Ids of the processes whose heartbeat lease has not expired."""
    rows = session.scalars(
        select(TaskLease.owner).where(TaskLease.name.startswith(PROCESS_PREFIX), TaskLease.expires_at >= utcnow())
    )
    return set(rows)
