"""The audit log for administrators: who did what to which object, when, from where, newest first.

The filter is a GET form, so a filtered view is a link an administrator can
bookmark or send to a colleague, and paging keeps the filter. Permission is
the service's: ``audit.list_events`` refuses anyone but an administrator and
the page answers with that refusal. A filter the page cannot understand (a
date that is not a date) is said beside the form while the unfiltered log is
shown: the administrator keeps a working page and sees what to fix.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from fogmachine.errors import ValidationError
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.web.pages.common import DashboardHandler, login_required
from fogmachine.web.pages.forms import FailedForm

PAGE_SIZE = 50
MAX_PAGE = 100_000  # the offset stays far inside every database's integer range
# field: (label, longest value the column holds)
TEXT_FIELDS = {"actor": ("who", 64), "action": ("action", 64), "object_type": ("object type", 32),
               "object_id": ("object id", 64), "result": ("result", 16)}
FIELDS = (*TEXT_FIELDS, "since", "until")
ACTION_RE = re.compile(r"[a-z_]+(\.[a-z_-]+)?")  # fullmatch only
OLDEST = dt.datetime(1970, 1, 1)
# Hints for the form's fields (datalists); any value may be typed.
SUGGESTIONS = {
    "action": ("guest", "guest.checkout", "guest.provision", "guest.start", "guest.stop", "guest.restart",
               "guest.pause", "guest.unpause", "guest.destroy", "guest.refresh", "guest.extend",
               "guest.delete", "guest.retire", "guest.reconcile", "host", "user", "user.login", "token"),
    "object_type": ("guest", "host", "user", "token"),
    "result": ("ok", "failed", "refused", "ignored"),
}


def _date(name: str, text: str, *, end_of_day: bool) -> dt.datetime | None:
    """A date (the form's date field) or an ISO date-time, as naive UTC like every column.

    A bare date as ``until`` means through the end of that day, which is what
    someone who picks 2026-05-04 in both fields expects to see.
    """
    if not text:
        return None
    value = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        day: dt.date | None = dt.date.fromisoformat(value)
    except ValueError:
        day = None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{name} must be a date such as 2026-01-31 (or a date and time in UTC)",
                              field=name) from None
    try:
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
        if end_of_day and day is not None:
            parsed += dt.timedelta(days=1)
    except OverflowError:
        raise ValidationError(f"{name} is out of range", field=name) from None
    if parsed < OLDEST:
        raise ValidationError(f"{name} must not be before 1970", field=name)
    return parsed


def parse_filter(form: dict[str, str], page_text: str) -> tuple[audit.AuditFilter, int]:
    """The service's filter and the page index (from 0) from what the form sent."""
    values: dict[str, Any] = {}
    for name, (label, longest) in TEXT_FIELDS.items():
        text = form.get(name, "")
        if len(text) > longest:
            raise ValidationError(f"{label} is too long (at most {longest} characters)", field=name)
        values[name] = text or None
    if values["action"] is not None and not ACTION_RE.fullmatch(values["action"]):
        raise ValidationError("action must be an action such as guest.start or a family such as guest",
                              field="action")
    since = _date("since", form.get("since", ""), end_of_day=False)
    until = _date("until", form.get("until", ""), end_of_day=True)
    if since is not None and until is not None and since >= until:
        raise ValidationError("since must be earlier than until", field="since")
    try:
        page = int(page_text or "1")
    except ValueError:
        raise ValidationError("page must be a whole number", field="page") from None
    if not 1 <= page <= MAX_PAGE:
        raise ValidationError(f"page must be between 1 and {MAX_PAGE}", field="page")
    flt = audit.AuditFilter(**values, since=since, until=until, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return flt, page - 1


def _events(session: Session, actor: Actor, flt: audit.AuditFilter) -> tuple[list[dict[str, Any]], int]:
    rows, total = audit.list_events(session, actor, flt)  # refuses non-administrators
    return [audit.event_to_dict(e) for e in rows], total


def page_url(form: dict[str, str], page: int) -> str:
    """This view's address on another page (``page`` from 0), with the same filter."""
    query = {k: v for k, v in form.items() if v}
    if page:
        query["page"] = str(page + 1)
    return "/admin/audit" + ("?" + urlencode(query) if query else "")


class AuditHandler(DashboardHandler):
    @login_required
    async def get(self) -> None:
        form = {name: self.get_query_argument(name, "").strip() for name in FIELDS}
        refused = False
        try:
            flt, page = parse_filter(form, self.get_query_argument("page", "1").strip())
        except ValidationError as exc:
            flt, page, refused = audit.AuditFilter(limit=PAGE_SIZE), 0, True
            # under the field at fault (a bad page number: at the top of the form), what was typed kept
            said = ValidationError(f"{exc.message}; the log below is not filtered", details=exc.details)
            self.show_failed(FailedForm.of("audit", said, form), said)
        events, total = await self.ctx.db.run(_events, self.actor, flt)
        pages = max(1, -(-total // PAGE_SIZE))
        shown = form if not refused else {}
        self.render("audit.html", events=events, total=total, page=page, pages=pages, form=form,
                    filtered=any(form.values()) and not refused, suggestions=SUGGESTIONS,
                    prev_url=page_url(shown, min(page, pages) - 1) if page > 0 else None,
                    next_url=page_url(shown, page + 1) if page + 1 < pages else None)


default_handlers = [(r"/admin/audit", AuditHandler)]
