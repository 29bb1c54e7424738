"""Removing everything a guest holds outside the database.

Deleting a guest, retiring it at expiry, undoing a failed checkout and
reconciling after a crash all need the same thing: power off and undefine its
domain, delete the volume Fogmachine made for it and remove its Cobbler
system. Each part that is already gone counts as done, so a teardown can be
repeated after an interruption until it succeeds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fogmachine.context import Context
from fogmachine.db.models import Guest
from fogmachine.errors import Conflict, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holdings:
    """What a guest holds outside the database, copied out of its row inside a unit of
    work (the row's host relationship must be loadable there)."""

    name: str
    host: str | None
    domain_name: str | None
    volume_path: str
    cobbler_system: str

    @classmethod
    def of(cls, guest: Guest) -> Holdings:
        return cls(name=guest.name, host=guest.host.name if guest.host is not None else None,
                   domain_name=guest.domain_name, volume_path=guest.volume_path,
                   cobbler_system=guest.cobbler_system)


async def release(ctx: Context, holdings: Holdings) -> None:
    """Tear down ``holdings``; raises the backend's error when a part could not be removed."""
    if holdings.host is not None and holdings.domain_name and ctx.hosts is not None:
        conn = ctx.hosts.get(holdings.host)
        try:
            await conn.destroy(holdings.domain_name)
        except (NotFound, Conflict):
            pass  # not running, or no such domain: nothing to power off
        try:
            await conn.undefine(holdings.domain_name)
        except NotFound:
            pass
        if holdings.volume_path:
            try:
                await conn.delete_volume(holdings.volume_path)
            except NotFound:
                pass
    if holdings.cobbler_system and ctx.cobbler is not None:
        await ctx.cobbler.remove_system(holdings.cobbler_system)
    log.info("released the domain, volume and Cobbler system of guest %s", holdings.name)
