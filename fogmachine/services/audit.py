"""The audit log: who did what to which object, when, from where, and how it ended.

Services record an event in the same transaction as the change itself, so the
log never claims a change that was rolled back; failures are recorded in a
transaction of their own by ``record_failure``.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from fogmachine.db.models import AuditEvent
from fogmachine.services.actor import Actor


def record(session: Session, actor: Actor, action: str, *, object_type: str = "", object_id: object = "",
           object_name: str = "", result: str = "ok", message: str = "") -> AuditEvent:
    event = AuditEvent(
        actor_id=actor.user_id, actor_name=actor.username[:64], action=action[:64], object_type=object_type[:32],
        object_id=str(object_id)[:64], object_name=object_name[:255], result=result[:16], message=message,
        remote_addr=actor.remote_addr[:64],
    )
    session.add(event)
    return event
