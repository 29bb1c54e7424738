"""The guest page, ``/guests/ID``: everything about one guest, and its actions.

Its owner and administrators see it; for anyone else it does not exist (the
same 404 as a missing guest, ``guestview.guest_page``). The actions and the
extend forms post to the routes of ``reservations`` with ``back`` set to this
page, so a refusal comes back here: a bad number of days under its field,
anything else as a flash. The open page follows its guest through the live
socket (``/live?guest=ID``, ``web/live``), which sends the parts this page
renders from ``guestview.status_parts`` again whenever they change.
"""

from __future__ import annotations

from fogmachine.errors import NotFound
from fogmachine.services import consolelog, guestview
from fogmachine.web.pages.common import DashboardHandler, login_required

LARGEST_ID = 2**31 - 1  # every database's integer ids; a larger one is simply not there


class GuestPageHandler(DashboardHandler):
    @login_required
    async def get(self, guest_id: str) -> None:
        number = int(guest_id)
        if not 1 <= number <= LARGEST_ID:
            raise NotFound(f"no guest with id {guest_id}")
        data = await self.ctx.db.run(guestview.guest_page, self.actor, number)
        if data["console_name"]:
            console = await consolelog.tail(self.ctx.config.console_log_dir, data["console_name"],
                                            data["guest"]["host"])
        else:
            console = consolelog.ConsoleTail(note="Its console log is no longer shown: the guest is retired, and "
                                                  "its name may belong to a new guest." if data["retired"] else
                                                  "Fogmachine did not create this guest, so it keeps no console "
                                                  "log of it.")
        self.render("guest.html", console=console, back=f"/guests/{number}", **data)


default_handlers = [(r"/guests/(\d{1,18})", GuestPageHandler)]
