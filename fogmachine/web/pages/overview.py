"""The overview: your guests and the cloud's capacity; the hosts page with the guests on them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.services import hosts as host_service
from fogmachine.services.actor import Actor
from fogmachine.services.guests import guest_to_dict, list_guests
from fogmachine.web.pages import guestlist
from fogmachine.web.pages.common import DashboardHandler, login_required
from fogmachine.web.pages.listview import ListView


def _overview(session: Session, config: Config, actor: Actor | None, guestview: ListView | None) -> dict[str, Any]:
    hosts = host_service.list_hosts(session)
    data: dict[str, Any] = {
        "hosts": host_service.host_dicts(session, hosts, config.cpu_overcommit),
        "capacity": host_service.capacity(hosts, config.cpu_overcommit, host_service.usage(session, hosts)),
        "guests": [],
    }
    if actor is not None and guestview is not None:
        guests, total = list_guests(session, actor, guestlist.guest_filter(guestview, owner=actor.username))
        data.update(guests=[guest_to_dict(g) for g in guests], total_guests=total,
                    **guestlist.template_values("mine", guestview, total, [h.name for h in hosts]))
    return data


def _hosts_with_guests(session: Session, config: Config, actor: Actor, guestview: ListView) -> dict[str, Any]:
    hosts = host_service.list_hosts(session)
    guests, total = list_guests(session, actor, guestlist.guest_filter(guestview, unmanaged=True))
    return {
        "hosts": host_service.host_dicts(session, hosts, config.cpu_overcommit),
        "capacity": host_service.capacity(hosts, config.cpu_overcommit, host_service.usage(session, hosts)),
        "guests": [guest_to_dict(g) for g in guests],
        "total_guests": total,
        **guestlist.template_values("host", guestview, total, [h.name for h in hosts]),
    }


class OverviewHandler(DashboardHandler):
    """Public: anyone may see the cloud's capacity; a logged-in user also sees their guests, as the URL
    searches, filters, sorts and pages them (``guestlist``)."""

    async def get(self) -> None:
        actor = self.actor if self.current_user is not None else None
        guestview = guestlist.parse("mine", actor, self.request.query_arguments) if actor is not None else None
        data = await self.ctx.db.run(_overview, self.ctx.config, actor, guestview)
        if guestview is not None and guestview.errors:
            self.set_status(400)
        self.render("overview.html", **data)


class HostsHandler(DashboardHandler):
    """Every host, and the guests on them in one list (an administrator's: everyone's) that the URL
    searches, filters (by host too), sorts (by host, at first) and pages."""

    @login_required
    async def get(self) -> None:
        guestview = guestlist.parse("host", self.actor, self.request.query_arguments)
        data = await self.ctx.db.run(_hosts_with_guests, self.ctx.config, self.actor, guestview)
        if guestview.errors:
            self.set_status(400)
        self.render("hosts.html", **data)


default_handlers = [(r"/", OverviewHandler), (r"/hosts", HostsHandler)]
