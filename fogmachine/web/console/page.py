"""``/guests/ID/console``: a guest's serial and graphical consoles on a page of their own.

The consoles themselves are ``templates/console_panel.html``, an include the guest page can embed as
well; this page only frames it. A guest the user may not see is a 404, as everywhere.
"""

from __future__ import annotations

from fogmachine.services.guests import get_guest, guest_to_dict
from fogmachine.web.pages.common import DashboardHandler, login_required


class ConsolePage(DashboardHandler):
    @login_required
    async def get(self, guest_id: str) -> None:
        actor = self.actor
        guest = await self.ctx.db.run(lambda s: guest_to_dict(get_guest(s, actor, int(guest_id))))
        self.render("console.html", guest=guest)


default_handlers = [(r"/guests/([0-9]{1,18})/console", ConsolePage)]
