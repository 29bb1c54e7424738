"""Where a HostConnection reports what it learns: the ``Listener`` protocol.

Apart from the connection so that the adapter's one way out is named in one
place: a connection hands its snapshots and its downs to a listener and never
writes anything itself. In the server the listener is
``services.hostwatch.HostManager``, which writes the database; a connection on
its own (a test, a benchmark) reports to ``NullListener``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fogmachine.virt.connection import HostConnection
    from fogmachine.virt.inventory import HostSnapshot


class Listener(Protocol):
    """What a HostConnection calls, on the IOLoop, one call at a time per host."""

    async def host_up(self, host: HostConnection, snapshot: HostSnapshot) -> None: ...

    async def host_down(self, host: HostConnection, reason: str) -> None: ...


class NullListener:
    """A listener that keeps nothing: for a connection that nobody asked to report."""

    async def host_up(self, host: HostConnection, snapshot: HostSnapshot) -> None:
        return None

    async def host_down(self, host: HostConnection, reason: str) -> None:
        return None
