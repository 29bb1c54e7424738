"""Guests that start from a disk image: which hosts can hold their disk, and making it.

A local-catalog profile with ``image`` gives each guest a copy-on-write qcow2
overlay of that image in its host's ``default`` storage pool: the image is
shared by every guest and never written, and a guest's disk exists in a
moment instead of after a copy of gigabytes. A host without that pool has
nowhere to put the overlay, and a guest without its disk has nothing to boot,
so such hosts are left out at placement: the checkout is refused with 409
when no host is left, rather than accepted with 202 and failed a moment
later. (Blank disks keep their older rule: no pool, no disk, the guest still
boots from the network or its kernel.)

Whether a host has the pool is asked of every connected host on each image
checkout; each connection remembers the answer for ``POOL_TTL`` seconds, so
that costs nothing most of the time. A pool removed within that window is
caught when the overlay is made: the guest fails with that reason and
everything made for it is undone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fogmachine.catalog import CatalogEntry
from fogmachine.context import Context
from fogmachine.errors import Conflict, FogmachineError

# A host that does not answer this fast is not chosen for an image (its executor may be stuck).
POOL_CHECK_TIMEOUT = 5.0
NO_POOL = "no active storage pool 'default' for the image's overlay"


async def hosts_without_pool(ctx: Context, entry: CatalogEntry) -> dict[str, str]:
    """Host name -> why it cannot hold ``entry``'s disk; empty for entries without an image."""
    if not entry.image or ctx.hosts is None:
        return {}
    conns = ctx.hosts.all()
    answers = await asyncio.gather(*(_why_not(conn) for conn in conns))
    return {conn.name: why for conn, why in zip(conns, answers, strict=True) if why}


async def _why_not(conn: Any) -> str:
    if not conn.connected:
        return "not connected to this server"
    try:
        async with asyncio.timeout(POOL_CHECK_TIMEOUT):
            path = await conn.pool_path()
    except TimeoutError:
        return f"did not say within {POOL_CHECK_TIMEOUT:g} s whether it has a storage pool"
    except FogmachineError as exc:
        return f"could not read its storage pool: {exc.message}"
    return "" if path is not None else NO_POOL


async def make_disk(conn: Any, name: str, entry: CatalogEntry) -> str | None:
    """The guest's disk on ``conn``'s host: an overlay of the entry's image, a blank volume of ``disk_gb``,
    or None (no disk wanted, or a blank one on a host without a pool)."""
    if entry.image:
        path: str | None = await conn.create_volume(name, entry.disk_gb, backing=entry.image,
                                                    backing_format=entry.image_format)
        if path is None:
            raise Conflict(f"host {conn.name} has {NO_POOL} ({entry.image})",
                           details={"host": conn.name, "image": entry.image})
        return path
    if entry.disk_gb > 0:
        blank: str | None = await conn.create_volume(name, entry.disk_gb)
        return blank
    return None
