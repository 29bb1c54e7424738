"""The claim: what a checkout decides before the caller gets an answer, in one transaction.

Validate the request, ask the catalog's source (fresh) for the profile or
image, then ONE locked unit of work: place the guest (``placement``) and
insert its row with its capacity, so concurrent checkouts, from this process
or another sharing the database, never overcommit a host. The new row goes
to the ``engine`` to be provisioned in the background; ``preview`` answers
the same placement question without claiming anything.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid as uuidmod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fogmachine import placement
from fogmachine.catalog import CatalogEntry
from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db.models import Guest, GuestState, Host, Step, utcnow
from fogmachine.errors import NoCapacity, PermissionDenied, ValidationError
from fogmachine.services import audit, diskimages
from fogmachine.services.actor import Actor
from fogmachine.services.checkout.engine import Job, provision
from fogmachine.services.reservations import validate_days
from fogmachine.services.tokens import hash_token

NAME_RE = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")  # always fullmatch: "$" lets a final "\n" in
MAX_PURPOSE = 2000
MAC_PREFIX = "52:54:00"


@dataclass(frozen=True)
class CheckoutRequest:
    name: str
    target: str
    days: Any
    purpose: str


# -- validation ------------------------------------------------------------------------------------

def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(
            "name must be a DNS label: 1 to 63 lower-case letters, digits or '-', starting with a letter "
            "and not ending with '-'", field="name")
    return name


def validate_purpose(purpose: Any) -> str:
    if not isinstance(purpose, str) or not purpose.strip():
        raise ValidationError("purpose is required: say what the guest is for", field="purpose")
    text: str = purpose.strip()
    if len(text) > MAX_PURPOSE:
        raise ValidationError(f"purpose must be at most {MAX_PURPOSE} characters", field="purpose")
    return text


def validate(req: CheckoutRequest, config: Config) -> tuple[str, int, str]:
    """(name, days, purpose), or ValidationError naming the first bad field."""
    name = validate_name(req.name)
    days = validate_days(req.days, config.max_days)
    purpose = validate_purpose(req.purpose)
    return name, days, purpose


def new_mac() -> str:
    return MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


# -- the claim: one transaction -------------------------------------------------------------------

def _name_taken(session: Session, name: str) -> bool:
    return session.scalar(select(Guest.id).where(Guest.live_name == name)) is not None


def _unique_mac(session: Session) -> str:
    for _ in range(20):
        mac = new_mac()
        if session.scalar(select(Guest.id).where(Guest.mac == mac)) is None:
            return mac
    raise RuntimeError("could not find a free MAC address in 20 tries")


def _claim(session: Session, actor: Actor, config: Config, name: str, entry: CatalogEntry, days: int,
           purpose: str, token_hash: str, worker: str, record: str, unfit: Mapping[str, str]) -> Guest:
    demand = placement.Demand(entry.ram_mb, entry.vcpus, entry.virt_type)
    hosts = placement.lock_hosts(session)  # from here on, checkouts take turns
    if _name_taken(session, name):
        raise ValidationError(f"a guest named {name} already exists", field="name")
    usage = placement.usage_by_host(session, [h.id for h in hosts])
    # A host that already has a domain of this name (someone else's) cannot take ours.
    clashing = {h for h in session.scalars(select(Guest.host_id).where(Guest.domain_name == name)) if h is not None}
    candidates = placement.rooms(hosts, usage, demand, config.cpu_overcommit, excluded=clashing, unfit=unfit)
    chosen = placement.choose(candidates, config.placement_policy)
    if chosen is None:
        raise NoCapacity(placement.no_room_message(demand, candidates), details={
            "requested": {"ram_mb": demand.ram_mb, "vcpus": demand.vcpus, "virt_type": demand.virt_type},
            "most_free": placement.most_free(candidates, demand),
            "hosts": {r.name: r.reason for r in candidates}})
    host = next(h for h in hosts if h.id == chosen.host_id)
    guest = Guest(
        name=name, live_name=name, domain_name=name, managed=True, owner_id=actor.user_id, host_id=host.id,
        target=entry.name, target_kind=entry.kind, ram_mb=entry.ram_mb, vcpus=entry.vcpus, disk_gb=entry.disk_gb,
        purpose=purpose, expires_at=utcnow() + dt.timedelta(days=days), state=GuestState.UNDEFINED,
        step=Step.REGISTERING if record else Step.DEFINING, uuid=str(uuidmod.uuid4()),
        mac=_unique_mac(session), phonehome_token_hash=token_hash, worker=worker,
        # Recorded before the record exists: reconciliation removes Fogmachine-made records no guest names.
        cobbler_system=record,
        # The record will carry the phone-home token until the install is finished (diskboot).
        cobbler_token_pending=bool(record),
    )
    session.add(guest)
    session.flush()
    audit.record(session, actor, "guest.checkout", object_type="guest", object_id=guest.id, object_name=name,
                 message=f"{entry.kind} {entry.name} on {host.name} for {days} day(s): "
                         f"{entry.ram_mb} MiB, {entry.vcpus} vCPU(s)")
    guest.host = host
    return guest


def _claim_or_explain(session: Session, *args: Any) -> Guest:
    try:
        with session.begin_nested():
            return _claim(session, *args)
    except IntegrityError:
        # Defence in depth: the unique live_name column is the database's own guard against a twin.
        name = args[3]
        if _name_taken(session, name):
            raise ValidationError(f"a guest named {name} already exists", field="name") from None
        raise


def _record_refusal(session: Session, actor: Actor, name: str, target: str, message: str) -> None:
    audit.record(session, actor, "guest.checkout", object_type="guest", object_name=name, result="refused",
                 message=f"{target}: {message}")


# -- the public entry points ----------------------------------------------------------------------

async def checkout(ctx: Context, actor: Actor, req: CheckoutRequest) -> Guest:
    """Validate, place and claim; return the new guest (step registering or defining) and provision it
    in the background. Raises ValidationError (400), NoCapacity (409) or the catalog's backend error (502)."""
    actor.require_write()
    if actor.user_id is None:
        raise PermissionDenied("a guest needs an owner: check out as a user")
    name, days, purpose = validate(req, ctx.config)
    catalog = ctx.need_catalog()
    entry = await catalog.resolve(req.target)
    unfit = await diskimages.hosts_without_pool(ctx, entry)
    token = secrets.token_urlsafe(32)
    record = catalog.record_for(name)
    try:
        guest = await ctx.db.run(_claim_or_explain, actor, ctx.config, name, entry, days, purpose,
                                 hash_token(token), ctx.process_id, record, unfit, lock=True)
    except NoCapacity as exc:
        await ctx.db.run(_record_refusal, actor, name, entry.name, exc.message)
        raise
    assert guest.host is not None  # _claim always places the guest on a host
    job = Job(guest.id, name, guest.host.name, guest.host.virt_type, guest.mac or "", str(guest.uuid), entry, token,
              record)
    ctx.provisioner.spawn(guest.id, provision(ctx, job))
    return guest


def _preview(session: Session, config: Config, entry: CatalogEntry, unfit: Mapping[str, str]) -> dict[str, Any]:
    demand = placement.Demand(entry.ram_mb, entry.vcpus, entry.virt_type)
    hosts = list(session.scalars(select(Host).order_by(Host.name)))
    usage = placement.usage_by_host(session, [h.id for h in hosts])
    candidates = placement.rooms(hosts, usage, demand, config.cpu_overcommit, unfit=unfit)
    chosen = placement.choose(candidates, config.placement_policy)
    return {
        "target": entry.to_dict(),
        "host": chosen.name if chosen else None,
        "fits": chosen is not None,
        "reason": "" if chosen else placement.no_room_message(demand, candidates),
        "policy": config.placement_policy,
        "hosts": [{"name": r.name, "free_ram_mb": r.free_ram_mb, "free_vcpus": r.free_vcpus, "fits": r.fits,
                   "reason": r.reason} for r in candidates],
    }


async def preview(ctx: Context, actor: Actor, target: str) -> dict[str, Any]:
    """Which host would take ``target`` now, or why none can (nothing is claimed)."""
    if actor.user_id is None and not actor.is_admin:
        raise PermissionDenied("log in to preview a checkout")
    entry = await ctx.need_catalog().resolve(target)
    unfit = await diskimages.hosts_without_pool(ctx, entry)
    return await ctx.db.run(_preview, ctx.config, entry, unfit)
