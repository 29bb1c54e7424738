"""Removing everything a guest holds outside the database.

Deleting a guest, retiring it at expiry, undoing a failed checkout and
reconciling after a crash all need the same thing: power off and undefine its
domain, delete the volume Fogmachine made for it and remove its Cobbler
system (its record with the catalog source, ``ctx.catalog.unregister``). Each
part that is already gone counts as done, so a teardown can be repeated after
an interruption until it succeeds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fogmachine.context import Context
from fogmachine.db.models import Guest
from fogmachine.errors import Conflict, FogmachineError, NotFound

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


@dataclass(frozen=True)
class Failure:
    what: str  # what was tried: "remove the domain web1"
    error: FogmachineError

    def __str__(self) -> str:
        return f"{self.what} ({self.error.message})"


async def release_each(ctx: Context, holdings: Holdings) -> tuple[Holdings, list[Failure]]:
    """Try to remove every part, whatever happened to the others.

    Returns what is still held (the parts that could not be removed) and why. The domain goes first
    (powered off, then undefined); its volume only once the domain is gone, since a domain still
    defined may be using it; the Cobbler system (the catalog source's record) in any case.
    """
    failures: list[Failure] = []
    domain_name, volume_path, cobbler_system = holdings.domain_name, holdings.volume_path, holdings.cobbler_system
    conn = None
    if holdings.host is not None and (domain_name or volume_path) and ctx.hosts is not None:
        try:
            conn = ctx.hosts.get(holdings.host)
        except FogmachineError as exc:
            failures.append(Failure(f"reach host {holdings.host}", exc))
    if conn is not None and domain_name:
        try:
            try:
                await conn.destroy(domain_name)
            except (NotFound, Conflict):
                pass  # not running, or no such domain: nothing to power off
            try:
                await conn.undefine(domain_name)
            except NotFound:
                pass
            domain_name = None
        except FogmachineError as exc:
            failures.append(Failure(f"remove the domain {domain_name}", exc))
    if conn is not None and volume_path and not domain_name:
        try:
            await conn.delete_volume(volume_path)
        except NotFound:
            pass
        except FogmachineError as exc:
            failures.append(Failure(f"delete the volume {volume_path}", exc))
        else:
            volume_path = ""
    if cobbler_system and ctx.catalog is not None:
        try:
            if await ctx.catalog.unregister(cobbler_system):
                cobbler_system = ""  # else the source keeps no records (no longer Cobbler): the row keeps its name
        except FogmachineError as exc:
            failures.append(Failure(f"remove the Cobbler system {cobbler_system}", exc))
    if failures:
        log.warning("guest %s: could not %s", holdings.name, "; ".join(map(str, failures)))
    else:
        log.info("released the domain, volume and Cobbler system of guest %s", holdings.name)
    return Holdings(holdings.name, holdings.host, domain_name, volume_path, cobbler_system), failures


async def release(ctx: Context, holdings: Holdings) -> None:
    """Tear ``holdings`` down completely or raise the first part's error: deleting, retiring and
    reconciling keep the guest's row (and try again later) unless everything is gone."""
    _, failures = await release_each(ctx, holdings)
    if failures:
        raise failures[0].error
