"""The audit log: who did what to which object, when, from where, and how it ended.

Services record an event in the same transaction as the change itself, so the
log never claims a change that was rolled back; failures are recorded in a
transaction of their own by ``record_failure``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fogmachine.db.models import AuditEvent
from fogmachine.services.actor import Actor
from fogmachine.timestamps import iso_utc


def record(session: Session, actor: Actor, action: str, *, object_type: str = "", object_id: object = "",
           object_name: str = "", result: str = "ok", message: str = "") -> AuditEvent:
    event = AuditEvent(
        actor_id=actor.user_id, actor_name=actor.username[:64], action=action[:64], object_type=object_type[:32],
        object_id=str(object_id)[:64], object_name=object_name[:255], result=result[:16], message=message,
        remote_addr=actor.remote_addr[:64],
    )
    session.add(event)
    return event


@dataclass(frozen=True)
class AuditFilter:
    """What an administrator looks for in the log; every field narrows, None leaves it open."""

    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    result: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    offset: int = 0
    limit: int = 100


def list_events(session: Session, actor: Actor, flt: AuditFilter = AuditFilter()) -> tuple[list[AuditEvent], int]:
    """Matching events, newest first, and how many match in all (administrators only)."""
    actor.require_admin()
    query = select(AuditEvent)
    if flt.actor is not None:
        query = query.where(AuditEvent.actor_name == flt.actor)
    if flt.action is not None:
        # "guest" matches every guest.* action; "guest.start" only that one.
        query = query.where(AuditEvent.action == flt.action if "." in flt.action
                            else AuditEvent.action.like(f"{flt.action}.%"))
    if flt.object_type is not None:
        query = query.where(AuditEvent.object_type == flt.object_type)
    if flt.object_id is not None:
        query = query.where(AuditEvent.object_id == flt.object_id)
    if flt.result is not None:
        query = query.where(AuditEvent.result == flt.result)
    if flt.since is not None:
        query = query.where(AuditEvent.at >= flt.since)
    if flt.until is not None:
        query = query.where(AuditEvent.at < flt.until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.id.desc()).offset(flt.offset).limit(flt.limit))
    return list(rows), total


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": iso_utc(event.at),
        "actor": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_name": event.object_name,
        "result": event.result,
        "message": event.message,
        "remote_addr": event.remote_addr,
    }
