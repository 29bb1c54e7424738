"""What every handler, service and task is handed: the configuration and the live adapters.

Built once by the server at start (or by a test fixture), never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fogmachine.config import Config
from fogmachine.db.session import Database


@dataclass
class Context:
    config: Config
    db: Database
    schema_revision: str = ""
    # The hosts (fogmachine.services.hostwatch.HostManager over a fogmachine.virt.HostFleet), attached at start.
    hosts: Any = None
    # The catalog of what can be checked out (Cobbler or the local file), attached at start.
    catalog: Any = None
    # The Cobbler client, when cobbler_url is set.
    cobbler: Any = None
    # Background work the server owns (provisioning runs, periodic tasks), for a clean stop.
    extras: dict[str, Any] = field(default_factory=dict)
