"""The overview: your guests and the cloud's capacity; the hosts page with their guests."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.services import hosts as host_service
from fogmachine.services.actor import Actor
from fogmachine.services.guests import GuestFilter, guest_to_dict, list_guests
from fogmachine.web.pages.common import DashboardHandler, login_required

MAX_LISTED = 1000


def _overview(session: Session, config: Config, actor: Actor | None) -> dict[str, Any]:
    hosts = host_service.list_hosts(session)
    mine: list[dict[str, Any]] = []
    if actor is not None:
        guests, _ = list_guests(session, actor, GuestFilter(owner=actor.username, limit=MAX_LISTED))
        mine = [guest_to_dict(g) for g in guests]
    return {
        "hosts": host_service.host_dicts(session, hosts, config.cpu_overcommit),
        "capacity": host_service.capacity(hosts, config.cpu_overcommit, host_service.usage(session, hosts)),
        "guests": mine,
    }


def _hosts_with_guests(session: Session, config: Config, actor: Actor) -> dict[str, Any]:
    hosts = host_service.list_hosts(session)
    guests, total = list_guests(session, actor, GuestFilter(include_unmanaged=True, limit=MAX_LISTED))
    by_host: dict[str, list[dict[str, Any]]] = {h.name: [] for h in hosts}
    for guest in guests:
        row = guest_to_dict(guest)
        if row["host"] in by_host:
            by_host[row["host"]].append(row)
    return {
        "hosts": host_service.host_dicts(session, hosts, config.cpu_overcommit),
        "guests_by_host": by_host,
        "capacity": host_service.capacity(hosts, config.cpu_overcommit, host_service.usage(session, hosts)),
        "truncated": total > len(guests),
    }


class OverviewHandler(DashboardHandler):
    """Public: anyone may see the cloud's capacity; a logged-in user also sees their guests."""

    async def get(self) -> None:
        actor = self.actor if self.current_user is not None else None
        data = await self.ctx.db.run(_overview, self.ctx.config, actor)
        self.render("overview.html", **data)


class HostsHandler(DashboardHandler):
    @login_required
    async def get(self) -> None:
        data = await self.ctx.db.run(_hosts_with_guests, self.ctx.config, self.actor)
        self.render("hosts.html", **data)


default_handlers = [(r"/", OverviewHandler), (r"/hosts", HostsHandler)]
