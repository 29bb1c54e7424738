"""Version and health: what a load balancer and an operator ask first (no credentials needed)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from fogmachine import __version__
from fogmachine.errors import DatabaseUnavailable
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.schema import Field, Obj

TAG = "meta"
VERSION = Obj("Version", (
    Field("version", "string", "Fogmachine's version"),
    Field("database_revision", "string", "the Alembic revision of the database schema"),
    Field("database_backend", "string", example="sqlite"),
), closed=False)
HEALTH = Obj("Health", (
    Field("status", "string", enum=("ok", "unhealthy")),
    Field("database", "string", enum=("ok", "unreachable")),
    Field("message", "string", required=False),
), closed=False)


class VersionHandler(ApiHandler):
    api = {"get": Op("Version of the server and of its database schema", TAG, response=VERSION, public=True)}

    def get(self) -> None:
        self.write_json({"version": __version__, "database_revision": self.ctx.schema_revision,
                         "database_backend": self.ctx.db.backend})


def _ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


class HealthHandler(ApiHandler):
    api = {"get": Op("Health: 200 when the database answers, 503 otherwise", TAG, response=HEALTH, public=True,
                     errors=(503,), alternatives=((503, HEALTH),))}

    async def get(self) -> None:
        try:
            await self.ctx.db.run(_ping)
        except DatabaseUnavailable as exc:
            self.write_json({"status": "unhealthy", "database": "unreachable", "message": exc.message}, 503)
            return
        self.write_json({"status": "ok", "database": "ok"})


default_handlers = [
    (r"/api/v1/version", VersionHandler),
    (r"/api/v1/health", HealthHandler),
    (r"/healthz", HealthHandler),
]
