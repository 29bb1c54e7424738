"""The audit log, for administrators: who did what to which object, filtered and paginated."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.schema import Field, Obj, Query, page_of, page_params

TAG = "audit"
EVENT = Obj("AuditEvent", (
    Field("id", "integer", minimum=1, maximum=2**63 - 1),
    Field("at", "datetime"),
    Field("actor", "string", "username, or the task's name for Fogmachine's own work"),
    Field("action", "string", example="guest.start"),
    Field("object_type", "string", example="guest"),
    Field("object_id", "string"),
    Field("object_name", "string"),
    Field("result", "string", example="ok"),
    Field("message", "string"),
    Field("remote_addr", "string"),
), closed=False)
EVENT_LIST = page_of("AuditEventList", "events", EVENT)
LIST_QUERY = Query((
    Field("actor", "string", "username", required=False, max_length=64),
    Field("action", "string", "an action (guest.start) or a family of them (guest)", required=False,
          max_length=64, pattern=r"^[a-z_]+(\.[a-z_-]+)?$"),
    Field("object_type", "string", required=False, max_length=32),
    Field("object_id", "string", required=False, max_length=64),
    Field("result", "string", required=False, max_length=16),
    Field("since", "datetime", "events at or after this time", required=False),
    Field("until", "datetime", "events before this time", required=False),
    *page_params(),
))


def _list(session: Session, actor: Actor, flt: audit.AuditFilter) -> tuple[list[dict[str, Any]], int]:
    rows, total = audit.list_events(session, actor, flt)
    return [audit.event_to_dict(e) for e in rows], total


class AuditHandler(ApiHandler):
    api = {"get": Op("List audit events", TAG, "Newest first.", query=LIST_QUERY, response=EVENT_LIST, admin=True)}

    async def get(self) -> None:
        flt = audit.AuditFilter(**self.params)
        events, total = await self.ctx.db.run(_list, self.actor, flt)
        self.write_json({"events": events, "total": total, "offset": flt.offset, "limit": flt.limit})


default_handlers = [(r"/api/v1/audit", AuditHandler)]
