"""The states a host and a guest can be in.

They live in the base layer, below both the database and the hypervisor
adapter, because both speak them: ``virt/`` maps libvirt's domain states onto
``GuestState`` and marks a connection ``HostState.UP``, and the ORM stores the
same values in its columns (plain strings, so no schema depends on these
classes). ``fogmachine.db.models`` re-exports both (and ``timestamps.utcnow``),
so code above the adapters keeps importing them from there.
"""

from __future__ import annotations

import enum


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
