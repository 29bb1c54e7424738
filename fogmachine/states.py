"""The states a host and a guest can be in, and the clock every timestamp is read from.

They live in the base layer, below both the database and the hypervisor
adapter, because both speak them: ``virt/`` maps libvirt's domain states onto
``GuestState`` and marks a connection ``HostState.UP`` with ``utcnow()``, and the
ORM stores the same values in its columns (plain strings, so no schema depends
on these classes). ``fogmachine.db.models`` re-exports all three, so code above
the adapters keeps importing them from there.
"""

from __future__ import annotations

import datetime as dt
import enum


def utcnow() -> dt.datetime:
    """Naive UTC now, the form every timestamp column holds."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class HostState(enum.StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class GuestState(enum.StrEnum):
    """The libvirt state of a guest's domain, plus what Fogmachine knows beyond libvirt."""

    NOSTATE = "nostate"
    RUNNING = "running"
    BLOCKED = "blocked"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    SUSPENDED = "suspended"
    UNKNOWN = "unknown"  # its host cannot be reached
    MISSING = "missing"  # the host answers but the domain is gone
    UNDEFINED = "undefined"  # no domain yet (provisioning) or no more (retired)
