"""My reservations: the actor's guests (searched, filtered, sorted and paged as ``guestlist`` reads the
URL), and every action on a guest's row.

Each action is a POST to ``/guests/ID/ACTION`` answered by a redirect back
with a flash (post, redirect, get: a reload never repeats an action). The
lifecycle service decides who may act on which guest; a guest the actor may
not see answers 404 here exactly as if it did not exist.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from sqlalchemy.orm import Session

from fogmachine.db.models import Guest, Step
from fogmachine.errors import FogmachineError, HostUnreachable
from fogmachine.services import hosts as host_service
from fogmachine.services import lifecycle, reservations
from fogmachine.services.actor import Actor
from fogmachine.services.guests import GuestFilter, get_guest, guest_to_dict, list_guests
from fogmachine.web.pages import guestlist, view
from fogmachine.web.pages.common import DashboardHandler, login_required, safe_next
from fogmachine.web.pages.listview import ListView

ROW_VIEWS = ("reservations", "mine", "admin", "host")
MAX_HISTORY = 1000


def _my_guests(session: Session, actor: Actor, guestview: ListView) -> dict[str, Any]:
    """The actor's live guests as the URL lists them, and their retired ones (history, newest retirement
    first).

    Retired rows come from the same service with ``step=retired``: it shows an
    actor only their own, so another user's history never reaches this page.
    """
    guests, total = list_guests(session, actor, guestlist.guest_filter(guestview, owner=actor.username))
    retired, _ = list_guests(session, actor, GuestFilter(owner=actor.username, step=Step.RETIRED, sort="retired",
                                                         descending=True, limit=MAX_HISTORY))
    host_names = [h.name for h in host_service.list_hosts(session)]
    return {"guests": [guest_to_dict(g) for g in guests], "total_guests": total,
            "history": [guest_to_dict(g) for g in retired],
            **guestlist.template_values("reservations", guestview, total, host_names)}


def _guest(session: Session, actor: Actor, guest_id: int) -> dict[str, Any]:
    return guest_to_dict(get_guest(session, actor, guest_id))


class ReservationsHandler(DashboardHandler):
    @login_required
    async def get(self) -> None:
        guestview = guestlist.parse("reservations", self.actor, self.request.query_arguments)
        data = await self.ctx.db.run(_my_guests, self.actor, guestview)
        if guestview.errors:
            self.set_status(400)
        self.render("reservations.html", **data)


class GuestRowHandler(DashboardHandler):
    """One guest's row, for the live page to insert a guest it has not seen yet."""

    @login_required
    async def get(self, guest_id: str) -> None:
        row_view = self.get_query_argument("view", "reservations")
        if row_view not in ROW_VIEWS:
            row_view = "reservations"
        guest = await self.ctx.db.run(_guest, self.actor, int(guest_id))
        self.render("guest_row.html", guest=guest, row_view=row_view,
                    back={"admin": "/admin", "mine": "/", "host": "/hosts"}.get(row_view, "/guests"))


class GuestActionHandler(DashboardHandler):
    """A power action from a button. Power off and restart ask first, as delete does
    (``view.CONFIRMED``): the button's script in the page, else the confirmation page."""

    @login_required
    async def get(self, guest_id: str, action: str) -> None:
        if action not in view.CONFIRMED:
            raise tornado.web.HTTPError(405)
        guest = await self.ctx.db.run(_guest, self.actor, int(guest_id))
        back = safe_next(self.get_query_argument("back", None), "/guests")
        self.render("confirm.html", action=action, guest=guest, back=back, unreachable=None)

    @login_required
    async def post(self, guest_id: str, action: str) -> None:
        back = self.back("/guests")
        if action in view.CONFIRMED and self.get_body_argument("confirm", "") != "yes":
            guest = await self.ctx.db.run(_guest, self.actor, int(guest_id))  # another's guest: 404, no question
            self.render("confirm.html", action=action, guest=guest, back=back, unreachable=None)
            return

        def said(guest: Guest) -> str:
            return f"{guest.name}: {view.ACTION_DONE.get(action, action)}."

        await self.attempt(lifecycle.perform(self.ctx, self.actor, int(guest_id), action), said, back)


class GuestExtendHandler(DashboardHandler):
    """Extend by the days sent: +1 and +7 buttons, or the number typed.

    A refused number (not a number, out of range, past the longest lease) goes
    back, through a redirect, to the page the form was on, under its field with
    what was typed (``form_failed``); any other refusal is a flash there.
    """

    @login_required
    async def post(self, guest_id: str) -> None:
        days = self.get_body_argument("days", "").strip()
        back = self.back("/guests")

        def said(guest: Guest) -> str:
            return f"{guest.name}: extended by {days} day(s), now expires {view.when(guest.expires_at)}."

        try:
            guest = await self.ctx.db.run(reservations.extend, self.ctx.config, self.actor, int(guest_id), days)
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise
            if exc.details.get("field") == "days":
                await self.form_failed(view.extend_form(int(guest_id)), exc, {"days": days}, back)
            else:
                self.failed(exc, back)
            return
        self.done(said(guest), back)


class GuestDeleteHandler(DashboardHandler):
    """Deleting asks first: the button's script confirms in the page; without
    script (or without ``confirm=yes``) a confirmation page asks instead.

    When the guest's host does not answer, an administrator is shown the
    confirmation page again with the reason and a "delete anyway" button
    (``force``: see ``lifecycle.delete``); anyone else gets the reason."""

    @login_required
    async def get(self, guest_id: str) -> None:
        guest = await self.ctx.db.run(_guest, self.actor, int(guest_id))
        back = safe_next(self.get_query_argument("back", None), "/guests")
        self.render("confirm.html", action="delete", guest=guest, back=back, unreachable=None)

    @login_required
    async def post(self, guest_id: str) -> None:
        guest = await self.ctx.db.run(_guest, self.actor, int(guest_id))
        back = self.back("/guests")
        if self.get_body_argument("confirm", "") != "yes":
            self.render("confirm.html", action="delete", guest=guest, back=back, unreachable=None)
            return
        force = self.get_body_argument("force", "") == "yes"
        if force:
            said = f"{guest['name']}: deleted; whatever is left on its host is removed when the host answers again."
        else:
            said = f"{guest['name']}: deleted."
        try:
            await lifecycle.delete(self.ctx, self.actor, int(guest_id), force=force)
        except HostUnreachable as exc:
            if not self.actor.is_admin or force:
                self.failed(exc, back)
                return
            self.set_status(exc.status)
            self.render("confirm.html", action="delete", guest=guest, back=back, unreachable=exc.message)
            return
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise
            self.failed(exc, back)
            return
        self.done(said, back)


default_handlers = [
    (r"/guests", ReservationsHandler),
    (r"/guests/(\d{1,18})/row", GuestRowHandler),
    (r"/guests/(\d{1,18})/(" + "|".join(lifecycle.ACTIONS) + ")", GuestActionHandler),
    (r"/guests/(\d{1,18})/extend", GuestExtendHandler),
    (r"/guests/(\d{1,18})/delete", GuestDeleteHandler),
]
