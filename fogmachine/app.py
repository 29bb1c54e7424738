"""The Tornado application and the server's start-up and shutdown.

``make_app`` builds the routes and settings from a ``Context``; ``Server``
owns the order of things: schema check, host sync, adapters, periodic tasks,
then the listening socket, and the reverse on the way down.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any, Protocol

import tornado.httpserver
import tornado.netutil
import tornado.web

from fogmachine import virthosts
from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db import migrate
from fogmachine.db.session import Database
from fogmachine.errors import FogmachineError
from fogmachine.logs import log_request
from fogmachine.web import api, callbacks, pages
from fogmachine.web.base import InFlight, NotFoundHandler, StaticHandler
from fogmachine.web.bodylimit import BodyLimit
from fogmachine.web.proxies import ForwardedHeaders, TrustedProxies

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
MAX_BODY = 1024 * 1024
# How long shutdown waits for requests already being handled.
DRAIN_SECONDS = 10.0


class Component(Protocol):
    """Something the server starts after the database and stops before it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def make_app(ctx: Context, **overrides: Any) -> tornado.web.Application:
    settings: dict[str, Any] = {
        "fm_context": ctx,
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
    handlers = api.routes() + pages.routes() + callbacks.default_handlers
    return tornado.web.Application(handlers, **settings)


def build_components(ctx: Context) -> list[Component]:
    """The adapters and tasks the running server needs, in start order."""
    from fogmachine.web.live import LiveFeed

    components: list[Component] = []
    # First: provisioning and the pages use the hosts, so they start before and stop after them.
    from fogmachine.services.hostwatch import HostManager

    ctx.hosts = HostManager(ctx)
    components.append(ctx.hosts)
    components.extend(provisioning_components(ctx))
    from fogmachine.tasks import build_registry

    components.append(build_registry(ctx))
    # Last: it only reads the database, and pages subscribe once the server listens.
    components.append(LiveFeed(ctx))
    return components


def provisioning_components(ctx: Context) -> list[Component]:
    """The catalog source (with its Cobbler client, for Cobbler) and the provisioning tasks, attached to the
    context."""
    from fogmachine.catalog import CobblerCatalog, build_source
    from fogmachine.services.checkout import provisioner

    source = build_source(ctx.config)
    ctx.catalog = source
    ctx.cobbler = source.cobbler if isinstance(source, CobblerCatalog) else None
    # Stopped before the hosts and Cobbler: running provisioning finishes (or is undone) first.
    return [source, provisioner(ctx)]


def open_database(config: Config) -> Database:
    return Database(config.database_url, threads=config.db_threads, connect_timeout=config.db_timeout)


def prepare_database(ctx: Context) -> None:
    """Blocking start-up work on the database: schema check or creation, host sync."""
    ctx.schema_revision = migrate.ensure_schema(ctx.db.engine)
    sync_hosts(ctx)


def sync_hosts(ctx: Context) -> None:
    """Blocking: virthosts.conf into the hosts table (at start, and on SIGHUP)."""
    entries = virthosts.parse(ctx.config.virthosts)
    with ctx.db.session() as session:
        result = virthosts.sync(session, entries)
    for label, names in (("added", result.added), ("updated", result.updated),
                         ("disabled", result.disabled), ("deleted", result.deleted)):
        if names:
            log.info("hosts %s from %s: %s", label, ctx.config.virthosts, ", ".join(names))


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.ctx: Context | None = None
        self.http: tornado.httpserver.HTTPServer | None = None
        self.components: list[Component] = []
        self.port: int = config.listen_port
        self.inflight: InFlight | None = None

    async def start(self) -> None:
        config = self.config
        ctx = Context(config=config, db=open_database(config))
        self.ctx = ctx
        try:
            await asyncio.get_running_loop().run_in_executor(ctx.db.executor, prepare_database, ctx)
        except BaseException:
            ctx.db.dispose()
            raise
        app = make_app(ctx)
        self.inflight = app.settings["fm_inflight"]
        started: list[Component] = []
        try:
            # Building them may refuse the configuration (catalog_source): the database is closed then too.
            self.components = build_components(ctx)
            for component in self.components:
                await component.start()
                started.append(component)
            sockets = tornado.netutil.bind_sockets(config.listen_port, config.listen_address)
        except BaseException:
            # A failed start (port taken, a component's error) leaves nothing running behind it.
            self.components = started
            await self.stop()
            raise
        # xheaders stays off: X-Forwarded-* count only from trusted_proxies (fogmachine.web.proxies).
        edge = ForwardedHeaders(BodyLimit(app, MAX_BODY), TrustedProxies(config.trusted_proxies))
        self.http = tornado.httpserver.HTTPServer(edge, max_body_size=MAX_BODY, xheaders=False)
        self.port = sockets[0].getsockname()[1]
        self.http.add_sockets(sockets)
        log.info("Fogmachine listening on http://%s:%d/ (database revision %s, config: %s)",
                 config.listen_address, self.port, ctx.schema_revision, config.source)

    async def reload_hosts(self) -> None:
        """Read virthosts.conf into the hosts table again and watch what it now lists (SIGHUP).

        A file that does not parse is reported and changes nothing: the hosts already watched go on.
        """
        ctx = self.ctx
        if ctx is None:
            return
        log.info("reading %s again", ctx.config.virthosts)
        try:
            await asyncio.get_running_loop().run_in_executor(ctx.db.executor, sync_hosts, ctx)
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
        if self.ctx is not None:
            self.ctx.db.dispose()
        log.info("Fogmachine stopped")


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly; SIGHUP reads virthosts.conf again."""
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

