"""What every service, task and handler is handed: the configuration, the database and the parts the rules use.

Every field is built, typed, by the composition (``fogmachine.composition``) before
the server starts, and stopped by it when the server stops: nothing here is made
on first use. The context belongs to the services layer, since it holds services'
parts (the hashing pool, the token cache, the provisioner, the hosts); the
imports below are for the type checker only, so that any service module may
import this one without a cycle.

What only the web needs (the live feed, the guest-list cache) is not here: the
composition hands it to the Tornado application's settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fogmachine.services.guestwork import GuestWork  # asyncio only: no cycle

if TYPE_CHECKING:
    from fogmachine.catalog.source import CatalogSource
    from fogmachine.cobbler import CobblerClient
    from fogmachine.config import Config
    from fogmachine.db.session import Database
    from fogmachine.services.accounts import HashingPool
    from fogmachine.services.checkout.engine import Provisioner
    from fogmachine.services.consoles import ConsoleBroker
    from fogmachine.services.environments.engine import EnvironmentWork
    from fogmachine.services.hostwatch import HostManager
    from fogmachine.services.tokens import TokenCache


@dataclass
class Context:
    config: Config
    db: Database
    # This process's id: the heartbeat lease's name, and the ``worker`` of the guests it provisions.
    process_id: str
    # Password hashing and checking, off the IOLoop and off the database threads.
    accounts: HashingPool
    # Resolved bearer tokens, cleared by the database's session events when a user or a token changes.
    tokens: TokenCache
    # The provisioning steps running in this process, and the follow-ups (disk boot) after them.
    provisioner: Provisioner
    # Who holds each guest's serial console in this process, and the unredeemed VNC tickets.
    consoles: ConsoleBroker
    # The moves of environments under way in this process (services/environments/engine.py).
    environments: EnvironmentWork
    # The hosts, watched. None only in a context built without them (unit tests, tools): services that
    # reach a host then skip that part.
    hosts: HostManager | None = None
    # The catalog source (Cobbler or the local file): what can be checked out, and the guests' records
    # with it (services register, unregister and finish guests through it alone). None as ``hosts``.
    catalog: CatalogSource | None = None
    # The Cobbler client of the Cobbler catalog source (None with another source): for tests and tools.
    cobbler: CobblerClient | None = None
    # Work on one guest that must not overlap in this process: finishing its install, tearing it down.
    guest_work: GuestWork = field(default_factory=GuestWork)
    schema_revision: str = ""

    def need_hosts(self) -> HostManager:
        """The hosts, for work that cannot go on without them (checkout's steps): a context built
        without them there is a mistake of its builder, said as such."""
        if self.hosts is None:
            raise RuntimeError("this context was built without hosts")
        return self.hosts

    def need_catalog(self) -> CatalogSource:
        """The catalog source, for work that cannot go on without it (checkout), as ``need_hosts``."""
        if self.catalog is None:
            raise RuntimeError("this context was built without a catalog source")
        return self.catalog
