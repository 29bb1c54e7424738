"""Leases in the database: one process at a time for each periodic task.

Taking a lease is one conditional UPDATE (``owner = me OR expired``), which
every supported database executes atomically, so no advisory-lock dialect
differences leak in. Each process also renews a ``process:<id>`` lease as its
heartbeat; reconciliation reads those to tell work orphaned by a dead process.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, select, update
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
    result = cast("CursorResult[Any]", session.execute(  # an UPDATE: its result has a rowcount
        update(TaskLease)
        .where(TaskLease.name == name, or_(TaskLease.owner == owner, TaskLease.expires_at < now))
        .values(owner=owner, expires_at=expires)
        .execution_options(synchronize_session=False)
    ))
    if result.rowcount == 1:
        return True
    if session.get(TaskLease, name) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(TaskLease(name=name, owner=owner, expires_at=expires))
    except IntegrityError:  # another process inserted it first
        return False
    return True


def release(session: Session, name: str, owner: str) -> None:
    session.execute(delete(TaskLease).where(TaskLease.name == name, TaskLease.owner == owner))


def live_processes(session: Session) -> set[str]:
    """Ids of the processes whose heartbeat lease has not expired."""
    rows = session.scalars(
        select(TaskLease.owner).where(TaskLease.name.startswith(PROCESS_PREFIX), TaskLease.expires_at >= utcnow())
    )
    return set(rows)
