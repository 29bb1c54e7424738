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
    # Adapters and services attached at start by later layers (virt, cobbler, bus, ...).
    extras: dict[str, Any] = field(default_factory=dict)
