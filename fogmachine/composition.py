"""Every part of a running Fogmachine, built explicitly and typed in one place, in start order.

``build`` is the server's (``app.Server.start``) and the tests' one way to make
the parts: each is given what it needs (the ``HostManager`` the configuration
and the database, the services their ``Context``), nothing is made on first use
elsewhere, and ``Components.in_start_order`` is the order the server starts them
in and stops them in reverse: first the hashing pool and the token cache
(requests use them), then the hosts (provisioning and the pages use them), the
catalog source, the provisioner (stopped before the hosts and Cobbler, so
running provisioning finishes or is undone first), the environments' moves
(stopped before the provisioner: no tier starts while it stops), the periodic tasks, the
live feed (it only reads the database; pages subscribe once the server
listens). The trimming of freed memory (``memtrim``) is one of the periodic
tasks; it serves the process, not a request.

``build_context`` is the services' part alone: what ``build`` hands every
service, and what unit tests and tools use when they need the rules over a
database but no hosts, no catalog and no server. Whoever builds it without
starting it releases it with ``release_context``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fogmachine.catalog import CatalogSource, CobblerCatalog, build_source
from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db.session import Database
from fogmachine.memtrim import trim_task
from fogmachine.services import leases
from fogmachine.services.accounts import HashingPool
from fogmachine.services.checkout import Provisioner
from fogmachine.services.consoles import ConsoleBroker
from fogmachine.services.environments.engine import EnvironmentWork
from fogmachine.services.hostwatch import HostManager
from fogmachine.services.tokens import TokenCache
from fogmachine.tasks import TaskRegistry, build_registry
from fogmachine.web.api.guestlist import GuestListCache
from fogmachine.web.live import LiveFeed


class Component(Protocol):
    """Something the server starts after the database and stops before it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Components:
    """The parts of one server: the services' context, and what only the server and the web hold."""

    ctx: Context
    hosts: HostManager
    catalog: CatalogSource
    tasks: TaskRegistry
    # The web's own parts, handed to the Tornado application's settings (``app.make_app``), not to services.
    live: LiveFeed
    guest_lists: GuestListCache

    def in_start_order(self) -> list[Component]:
        ctx = self.ctx
        return [ctx.accounts, ctx.tokens, self.hosts, self.catalog, ctx.provisioner, ctx.environments, self.tasks,
                self.live]


def build_context(config: Config, db: Database, *, hosts: HostManager | None = None,
                  catalog: CatalogSource | None = None, schema_revision: str = "") -> Context:
    """The services' context: a new process id, the hashing pool, the token cache (watching ``db``'s
    sessions from now on) and the provisioner, with the hosts and catalog source given (or none)."""
    tokens = TokenCache()
    tokens.watch(db.sessionmaker)
    return Context(
        config=config, db=db, process_id=leases.new_process_id(), accounts=HashingPool(), tokens=tokens,
        provisioner=Provisioner(), consoles=ConsoleBroker(), environments=EnvironmentWork(), hosts=hosts,
        catalog=catalog,
        cobbler=catalog.cobbler if isinstance(catalog, CobblerCatalog) else None, schema_revision=schema_revision)


def release_context(ctx: Context) -> None:
    """Let go of what ``build_context`` made that outlives a test: the token cache's session hooks and the
    hashing pool's threads. The server does not need this: stopping its components does the same."""
    ctx.tokens.unwatch()
    ctx.accounts.close()


def build(config: Config, db: Database, *, schema_revision: str = "") -> Components:
    """Every part of the server, none started; ConfigError when the configuration names a catalog source
    that cannot be built (``catalog_source``)."""
    catalog = build_source(config)
    hosts = HostManager(config, db)
    ctx = build_context(config, db, hosts=hosts, catalog=catalog, schema_revision=schema_revision)
    tasks = build_registry(ctx)
    if (trim := trim_task()) is not None:  # the process's own: freed memory back to the system
        tasks.add(trim)
    return Components(ctx=ctx, hosts=hosts, catalog=catalog, tasks=tasks, live=LiveFeed(ctx),
                      guest_lists=GuestListCache(db))
