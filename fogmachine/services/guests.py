"""Reading guests: what an actor may see, filtered and paginated, and their JSON form.

A guest that an actor may not see is reported as not found, never as
forbidden, so ids cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, contains_eager

from fogmachine.db.models import Guest, Host, Step, User
from fogmachine.errors import NotFound, ValidationError
from fogmachine.services import listing
from fogmachine.services.actor import Actor
from fogmachine.timestamps import iso_utc

# What a guest list may be ordered by. "created" is the id: ids are handed out in the order guests are
# made and, unlike created_at (whole seconds on MariaDB), never tie.
GUEST_SORTS = ("created", "name", "state", "host", "owner", "expires", "retired")


@dataclass(frozen=True)
class GuestFilter:
    """Which guests a list shows, in what order, which page of them.

    ``owner`` and ``host`` are exact names; ``search`` matches part of the name, the hostname or the IP
    address, in any case; ``sort`` is one of ``GUEST_SORTS`` (guests without a host, an owner, an expiry
    or a retirement come last either way). Nothing here widens what the actor may see: ``list_guests``
    applies the filter inside the actor's own guests.
    """

    owner: str | None = None
    state: str | None = None
    host: str | None = None
    step: str | None = None
    search: str = ""
    include_retired: bool = False
    include_unmanaged: bool = False
    sort: str = "created"
    descending: bool = False
    offset: int = 0
    limit: int = 100


def _order(flt: GuestFilter) -> list[Any]:
    """ORDER BY for the filter's sort; rows that tie keep the order they were made in, the same way round."""
    if flt.sort not in GUEST_SORTS:
        raise ValidationError(f"sort must be one of {', '.join(GUEST_SORTS)}", field="sort")
    made = Guest.id.desc() if flt.descending else Guest.id.asc()
    if flt.sort == "created":
        return [made]
    if flt.sort in ("name", "state", "host", "owner"):
        # Case apart first, so the order is the same on SQLite (which compares bytes) as on the others.
        column = {"name": Guest.name, "state": Guest.state, "host": Host.name, "owner": User.username}[flt.sort]
        empty_last = flt.sort in ("host", "owner")  # a guest not placed yet; a domain nobody checked out
        return [*listing.ordered(func.lower(column), flt.descending, empty_last=empty_last), column, made]
    moment = Guest.expires_at if flt.sort == "expires" else Guest.retired_at
    return [*listing.ordered(moment, flt.descending, empty_last=True), made]


def list_guests(session: Session, actor: Actor, flt: GuestFilter = GuestFilter()) -> tuple[list[Guest], int]:
    """The guests ``actor`` may see that match ``flt``, one page in its order, and how many match in all.

    Filtering, ordering and paging all happen in the one query, so a page costs the same however many
    guests there are.
    """
    if flt.limit < 1 or flt.limit > 1000:
        raise ValidationError("limit must be between 1 and 1000", field="limit")
    if flt.offset < 0:
        raise ValidationError("offset must not be negative", field="offset")
    order = _order(flt)
    # Owner and host are joined once, for the filters, the order and the rows' own owner and host alike.
    query = (select(Guest).outerjoin(Guest.owner).outerjoin(Guest.host)
             .options(contains_eager(Guest.owner), contains_eager(Guest.host)))
    if not actor.is_admin:
        query = query.where(Guest.owner_id == actor.user_id)
    if not flt.include_unmanaged or not actor.is_admin:
        query = query.where(Guest.managed.is_(True))
    if flt.owner is not None:
        query = query.where(User.username == flt.owner)
    if flt.host is not None:
        query = query.where(Host.name == flt.host)
    if flt.state is not None:
        query = query.where(Guest.state == flt.state)
    if flt.step is not None:
        query = query.where(Guest.step == flt.step)
    if not flt.include_retired and flt.step != Step.RETIRED:
        query = query.where(Guest.step != Step.RETIRED)
    search = flt.search.strip()
    if search:
        query = query.where(or_(listing.contains(Guest.name, search), listing.contains(Guest.hostname, search),
                                listing.contains(Guest.ip, search)))
    total = listing.count(session, query)
    rows = session.scalars(query.order_by(*order).offset(flt.offset).limit(flt.limit))
    return list(rows), total


def get_guest(session: Session, actor: Actor, guest_id: int, *, for_update: bool = False) -> Guest:
    """The guest, or NotFound when it does not exist or ``actor`` may not see it."""
    query = select(Guest).where(Guest.id == guest_id)
    if for_update:
        query = query.with_for_update()
    guest = session.scalar(query)
    if guest is None or not (actor.is_admin or (guest.managed and guest.owner_id == actor.user_id)):
        raise NotFound(f"no guest with id {guest_id}")
    return guest


def find_guest_id(session: Session, actor: Actor, ref: str) -> int:
    """A guest's id from its id or its MAC address, as the original's ``/guest/<id-or-mac>/...`` routes
    name guests; NotFound (not forbidden) for a guest the actor may not see, as everywhere."""
    text = ref.strip().lower().replace("-", ":")
    if text.isascii() and text.isdigit():  # str.isdigit alone takes "²", which int() refuses
        guest_id = int(text)
        if guest_id < 1 or guest_id > 2**31 - 1:
            raise NotFound(f"no guest with id {ref}")
        return get_guest(session, actor, guest_id).id
    guest = session.scalar(select(Guest).where(Guest.mac == text))
    if guest is None or not (actor.is_admin or (guest.managed and guest.owner_id == actor.user_id)):
        raise NotFound(f"no guest with MAC address {ref}")
    return guest.id


def guest_to_dict(guest: Guest) -> dict[str, Any]:
    """The guest as the API and the live page show it (the token hash never leaves)."""
    return {
        "id": guest.id,
        "name": guest.name,
        "owner": guest.owner.username if guest.owner is not None else None,
        "host": guest.host.name if guest.host is not None else None,
        "managed": guest.managed,
        "target": guest.target,
        "target_kind": guest.target_kind,
        "ram_mb": guest.ram_mb,
        "vcpus": guest.vcpus,
        "disk_gb": guest.disk_gb,
        "purpose": guest.purpose,
        "state": guest.state,
        "step": guest.step,
        "step_reason": guest.step_reason,
        "mac": guest.mac,
        "ip": guest.ip,
        "hostname": guest.hostname,
        "vnc_port": guest.vnc_port,
        "uuid": guest.uuid,
        "created_at": iso_utc(guest.created_at),
        "expires_at": iso_utc(guest.expires_at),
        "retired_at": iso_utc(guest.retired_at),
        "updated_at": iso_utc(guest.updated_at),
    }
