"""Version and health: what a load balancer and an operator ask first."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from fogmachine import __version__
from fogmachine.errors import DatabaseUnavailable
from fogmachine.web.base import JsonHandler


class VersionHandler(JsonHandler):
    def get(self) -> None:
        self.write_json({"version": __version__, "database_revision": self.ctx.schema_revision,
                         "database_backend": self.ctx.db.backend})


def _ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


class HealthHandler(JsonHandler):
    async def get(self) -> None:
        try:
            await self.ctx.db.run(_ping)
        except DatabaseUnavailable as exc:
            self.write_json({"status": "unhealthy", "database": "unreachable", "message": exc.message}, 503)
            return
        self.write_json({"status": "ok", "database": "ok"})


default_handlers = [
    (r"/api/v1/version", VersionHandler),
    (r"/healthz", HealthHandler),
]
