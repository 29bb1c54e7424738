"""What every handler, service and task is handed: the configuration and the live adapters.

Built once by the server at start (or by a test fixture), never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fogmachine.catalog.source import CatalogSource
from fogmachine.config import Config
from fogmachine.db.session import Database


@dataclass
class Context:
    config: Config
    db: Database
    schema_revision: str = ""
    # The hosts (fogmachine.services.hostwatch.HostManager over a fogmachine.virt.HostFleet), attached at start.
    hosts: Any = None
    # The catalog source (Cobbler or the local file), attached at start: what can be checked out, and the
    # guests' records with it (services register, unregister and finish guests through it alone).
    catalog: CatalogSource | None = None
    # The Cobbler client of the Cobbler catalog source (None with another source): for tests and tools.
    cobbler: Any = None
    # Background work the server owns (provisioning runs, periodic tasks), for a clean stop.
    extras: dict[str, Any] = field(default_factory=dict)
