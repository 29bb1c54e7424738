"""Cobbler: the XML-RPC client (the one place Cobbler's faults are translated)."""

from fogmachine.cobbler.client import (
    MISSING,
    CobblerClient,
    CobblerTimeout,
    CobblerUnreachable,
    SystemSpec,
    clean_fault,
)

__all__ = ["MISSING", "CobblerClient", "CobblerTimeout", "CobblerUnreachable", "SystemSpec", "clean_fault"]
