"""GuestWork: one guest's background finishing and its teardown never overlap in this process.

Finishing an install (``diskboot.finish``) edits the guest's Cobbler system:
a handle, a change, a save. Cobbler's save adds the object back if it was
removed meanwhile, so a delete or an expiry that removed the system while the
edit was under way left it standing, with nobody's guest behind it (seen once
in CI: a DELETE answered 204 and the system was still there). So both take the
guest's lock here: a teardown waits for a finish in flight, and a finish that
finds a teardown under way leaves it to the next retry, which reads the
retired row and does nothing.

Only this process's work is ordered this way: a guest's phone-home handled by
another process at the very moment of its delete can still leave a system
behind, which reconciliation removes as an orphan (``services/reconcile.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class GuestWork:
    """An asyncio lock per guest id, made on first use and dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    def busy(self, guest_id: int) -> bool:
        """Whether some work on the guest is under way (or waiting) in this process."""
        return guest_id in self._locks

    def holders(self, guest_id: int) -> int:
        """How many pieces of work on the guest are under way or waiting (one at most is under way)."""
        return self._locks.get(guest_id, (None, 0))[1]

    @asynccontextmanager
    async def hold(self, guest_id: int) -> AsyncIterator[None]:
        """Do the block alone among this process's work on ``guest_id``, after the work before it."""
        lock, users = self._locks.get(guest_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[guest_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[guest_id]
            if users == 1:
                del self._locks[guest_id]
            else:
                self._locks[guest_id] = (lock, users - 1)
