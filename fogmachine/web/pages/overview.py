"""The overview page: the cloud's hosts and their capacity."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.db.models import Host
from fogmachine.web.base import PageHandler


def _hosts(session: Session) -> list[Host]:
    return list(session.scalars(select(Host).order_by(Host.name)))


class OverviewHandler(PageHandler):
    async def get(self) -> None:
        hosts = await self.ctx.db.run(_hosts)
        self.render("overview.html", hosts=hosts)


default_handlers = [(r"/", OverviewHandler)]
