"""The Tornado application and the server's start-up and shutdown.

``make_app`` builds the routes and settings from a ``Context`` and the web's
own parts; ``Server`` owns the order of things: schema check, host sync, every
part built by ``composition.build`` and started in its order, then the
listening socket, and the reverse on the way down.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from fogmachine import memtrim, virthosts
from fogmachine.composition import Component, Components, build
from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db import migrate
from fogmachine.db.session import Database
from fogmachine.errors import FogmachineError
from fogmachine.logs import log_request
from fogmachine.web import api, callbacks, console, pages
from fogmachine.web.api.guestlist import GuestListCache
from fogmachine.web.base import InFlight, NotFoundHandler, StaticHandler
from fogmachine.web.bodylimit import BodyLimit
from fogmachine.web.live import LiveFeed
from fogmachine.web.proxies import ForwardedHeaders, TrustedProxies

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
MAX_BODY = 1024 * 1024
# How long shutdown waits for requests already being handled.
DRAIN_SECONDS = 10.0


def make_app(ctx: Context, *, live: LiveFeed | None = None, guest_lists: GuestListCache | None = None,
             **overrides: Any) -> tornado.web.Application:
    """The routes and settings; the web's own parts (``composition.Components``) go into the settings, where
    the handlers' base class reads them (``BaseHandler.live``, ``BaseHandler.guest_lists``)."""
    settings: dict[str, Any] = {
        "fm_context": ctx,
        "fm_live": live,
        "fm_guest_lists": guest_lists,
        "fm_inflight": InFlight(),
        "template_path": str(TEMPLATES),
        "static_path": str(STATIC),
        "static_handler_class": StaticHandler,
        "cookie_secret": ctx.config.cookie_secret(),
        "xsrf_cookies": True,
        "xsrf_cookie_kwargs": {"httponly": False, "samesite": "Lax"},
        "login_url": "/login",
        "log_function": log_request,
        "default_handler_class": NotFoundHandler,
        "compress_response": True,
    }
    settings.update(overrides)
    handlers = api.routes() + console.routes() + pages.routes() + callbacks.default_handlers
    return tornado.web.Application(handlers, **settings)


def open_database(config: Config) -> Database:
    return Database(config.database_url, threads=config.db_threads, connect_timeout=config.db_timeout)


def prepare_database(config: Config, db: Database) -> str:
    """Blocking start-up work on the database: schema check or creation, host sync; the schema's revision."""
    revision = migrate.ensure_schema(db.engine)
    sync_hosts(config, db)
    return revision


def sync_hosts(config: Config, db: Database) -> None:
    """Blocking: virthosts.conf into the hosts table (at start, and on SIGHUP)."""
    entries = virthosts.parse(config.virthosts)
    with db.session() as session:
        result = virthosts.sync(session, entries)
    for label, names in (("added", result.added), ("updated", result.updated),
                         ("disabled", result.disabled), ("deleted", result.deleted)):
        if names:
            log.info("hosts %s from %s: %s", label, config.virthosts, ", ".join(names))


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.db: Database | None = None
        self.parts: Components | None = None  # every part, built at start (composition.build)
        self.ctx: Context | None = None
        self.http: tornado.httpserver.HTTPServer | None = None
        self.components: list[Component] = []  # the parts started, stopped in reverse
        self.port: int = config.listen_port
        self.inflight: InFlight | None = None

    async def start(self) -> None:
        config = self.config
        db = self.db = open_database(config)
        try:
            revision = await asyncio.get_running_loop().run_in_executor(db.executor, prepare_database, config, db)
            # Building them may refuse the configuration (catalog_source): the database is closed then too.
            parts = self.parts = build(config, db, schema_revision=revision)
        except BaseException:
            db.dispose()
            raise
        self.ctx = parts.ctx
        app = make_app(parts.ctx, live=parts.live, guest_lists=parts.guest_lists)
        self.inflight = app.settings["fm_inflight"]
        started: list[Component] = []
        try:
            for component in parts.in_start_order():
                await component.start()
                started.append(component)
            sockets = tornado.netutil.bind_sockets(config.listen_port, config.listen_address)
        except BaseException:
            # A failed start (port taken, a component's error) leaves nothing running behind it.
            self.components = started
            await self.stop()
            raise
        self.components = started
        # xheaders stays off: X-Forwarded-* count only from trusted_proxies (fogmachine.web.proxies).
        edge = ForwardedHeaders(BodyLimit(app, MAX_BODY), TrustedProxies(config.trusted_proxies))
        self.http = tornado.httpserver.HTTPServer(edge, max_body_size=MAX_BODY, xheaders=False)
        self.port = sockets[0].getsockname()[1]
        self.http.add_sockets(sockets)
        log.info("Fogmachine listening on http://%s:%d/ (database revision %s, config: %s)",
                 config.listen_address, self.port, revision, config.source)

    async def reload_hosts(self) -> None:
        """Read virthosts.conf into the hosts table again and watch what it now lists (SIGHUP).

        A file that does not parse is reported and changes nothing: the hosts already watched go on.
        """
        ctx = self.ctx
        if ctx is None:
            return
        log.info("reading %s again", ctx.config.virthosts)
        try:
            await asyncio.get_running_loop().run_in_executor(ctx.db.executor, sync_hosts, ctx.config, ctx.db)
            if ctx.hosts is not None:
                await ctx.hosts.reload()
        except FogmachineError as exc:
            log.error("hosts not reloaded: %s", exc.message)

    async def stop(self) -> None:
        if self.http is not None:
            self.http.stop()  # no new connections
            if self.inflight is not None and not await self.inflight.wait_idle(DRAIN_SECONDS):
                log.warning("stopping with %d request(s) still running after %g s", self.inflight.count,
                            DRAIN_SECONDS)
            await self.http.close_all_connections()
        for component in reversed(self.components):
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s failed", type(component).__name__)
        if self.db is not None:
            self.db.dispose()
        log.info("Fogmachine stopped")


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly; SIGHUP reads virthosts.conf again."""
    memtrim.limit_arenas()  # before the server's threads allocate (memtrim.py says why)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = Server(config)
    await server.start()
    reloads: set[asyncio.Task[None]] = set()

    def hangup() -> None:
        task = loop.create_task(server.reload_hosts())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await asyncio.gather(*reloads, return_exceptions=True)
        await server.stop()

