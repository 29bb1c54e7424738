"""The claim: what a checkout decides before the caller gets an answer, in one transaction.

Validate the request, ask the catalog's source (fresh) for the profile or
image, then ONE locked unit of work: place the guest (``placement``) and
insert its row with its capacity, so concurrent checkouts, from this process
or another sharing the database, never overcommit a host. The new row goes
to the ``engine`` to be provisioned in the background; ``preview`` answers
the same placement question without claiming anything.

The parts of the claim that a guest of an environment shares with a guest of
its own are public, so both are made by the same code: ``new_guest`` (the
row), ``audit_checkout``, ``in_savepoint`` (a name the database refuses, said
as the check says it), ``record_refusal`` and ``start_provisioning``.
``services/environments/claim`` places all of an environment's guests in one
transaction with them.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid as uuidmod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

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
T = TypeVar("T")


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

def refuse_taken_name(session: Session, name: str) -> None:
    """ValidationError (field ``name``) when a live guest already has ``name``."""
    if session.scalar(select(Guest.id).where(Guest.live_name == name)) is not None:
        raise ValidationError(f"a guest named {name} already exists", field="name")


def unique_mac(session: Session, avoid: Collection[str] = ()) -> str:
    """A MAC no guest row has, nor any of ``avoid`` (those given to guests of the same claim, not yet
    flushed)."""
    for _ in range(20):
        mac = new_mac()
        if mac not in avoid and session.scalar(select(Guest.id).where(Guest.mac == mac)) is None:
            return mac
    raise RuntimeError("could not find a free MAC address in 20 tries")


@dataclass(frozen=True)
class Launch:
    """What a guest provisioned right after its claim gets in the claim itself: the hash of its phone-home
    token, the process that provisions it (``worker``, how reconciliation tells a dead process's checkouts)
    and its record with the catalog source ("" when the source keeps none)."""

    token_hash: str
    worker: str
    record: str


def new_guest(session: Session, actor: Actor, name: str, entry: CatalogEntry, host: Host, purpose: str,
              expires_at: dt.datetime, launch: Launch | None, avoid_macs: Collection[str] = ()) -> Guest:
    """THE row a checkout makes, added to the session: a guest of its own's, and each of an environment's.

    With a ``launch`` the guest is provisioned as soon as the claim commits (step registering or defining).
    Without one it is a later tier's guest: capacity held on ``host`` (step waiting), no domain name, token,
    catalog record or worker until its tier starts, so that until then there is nothing of it anywhere but
    this row (reconciliation, teardown and the host resyncs have nothing to find).
    """
    guest = Guest(
        name=name, live_name=name, managed=True, owner_id=actor.user_id, host_id=host.id,
        target=entry.name, target_kind=entry.kind, ram_mb=entry.ram_mb, vcpus=entry.vcpus, disk_gb=entry.disk_gb,
        purpose=purpose, expires_at=expires_at, state=GuestState.UNDEFINED, uuid=str(uuidmod.uuid4()),
        mac=unique_mac(session, avoid_macs))
    if launch is None:
        guest.step, guest.domain_name, guest.phonehome_token_hash, guest.worker = Step.WAITING, None, "", ""
    else:
        apply_launch(guest, launch)
    session.add(guest)
    guest.host = host
    return guest


def apply_launch(guest: Guest, launch: Launch) -> None:
    """The guest is provisioned from now on: its step, domain name, token, worker and catalog record, in the
    unit of work that claims it (a guest of its own) or starts its tier (an environment's)."""
    guest.step = Step.REGISTERING if launch.record else Step.DEFINING
    guest.step_reason = ""
    guest.domain_name, guest.phonehome_token_hash, guest.worker = guest.name, launch.token_hash, launch.worker
    # Recorded before the record exists: reconciliation removes Fogmachine-made records no guest names.
    guest.cobbler_system = launch.record
    # The record will carry the phone-home token until the install is finished (diskboot).
    guest.cobbler_token_pending = bool(launch.record)


def audit_checkout(session: Session, actor: Actor, guest: Guest, entry: CatalogEntry, days: int,
                   note: str = "") -> None:
    """The "guest.checkout" line of a flushed guest row (``note``: what else to say, as its environment)."""
    host = guest.host.name if guest.host is not None else "?"
    audit.record(session, actor, "guest.checkout", object_type="guest", object_id=guest.id, object_name=guest.name,
                 message=f"{entry.kind} {entry.name} on {host} for {days} day(s): "
                         f"{entry.ram_mb} MiB, {entry.vcpus} vCPU(s){note}")


def in_savepoint(session: Session, claim: Callable[[], T], refuse_twins: Callable[[], None]) -> T:
    """Run ``claim`` in a savepoint; a unique name the database refuses is then said as the claim's own check
    says it (``refuse_twins`` raises). Defence in depth: the unique ``live_name`` columns are the database's
    own guard against a twin that slipped past the check (no host to lock, so no turn taken)."""
    try:
        with session.begin_nested():
            return claim()
    except IntegrityError:
        refuse_twins()
        raise


def record_refusal(session: Session, actor: Actor, kind: str, name: str, what: str, message: str) -> None:
    """The audit line of a checkout (``kind`` guest or environment) refused for want of room."""
    audit.record(session, actor, f"{kind}.checkout", object_type=kind, object_name=name, result="refused",
                 message=f"{what}: {message}")


def start_provisioning(ctx: Context, guest: Guest, entry: CatalogEntry, token: str) -> None:
    """Hand a claimed guest (its claim committed) to the engine, in the background."""
    assert guest.host is not None  # every claim places its guests on a host
    job = Job(guest.id, guest.name, guest.host.name, guest.host.virt_type, guest.mac or "", str(guest.uuid), entry,
              token, guest.cobbler_system)
    ctx.provisioner.spawn(guest.id, provision(ctx, job))


def requested(demand: placement.Demand) -> dict[str, Any]:
    """What a refused guest asked for, as the 409's details say it."""
    return {"ram_mb": demand.ram_mb, "vcpus": demand.vcpus, "virt_type": demand.virt_type}


def _claim(session: Session, actor: Actor, config: Config, name: str, entry: CatalogEntry, days: int,
           purpose: str, launch: Launch, unfit: Mapping[str, str]) -> Guest:
    demand = placement.Demand(entry.ram_mb, entry.vcpus, entry.virt_type)
    hosts = placement.lock_hosts(session)  # from here on, checkouts take turns
    refuse_taken_name(session, name)
    usage = placement.usage_by_host(session, [h.id for h in hosts])
    # A host that already has a domain of this name (someone else's) cannot take ours.
    clashing = {h for h in session.scalars(select(Guest.host_id).where(Guest.domain_name == name)) if h is not None}
    candidates = placement.rooms(hosts, usage, demand, config.cpu_overcommit, excluded=clashing, unfit=unfit)
    chosen = placement.choose(candidates, config.placement_policy)
    if chosen is None:
        raise NoCapacity(placement.no_room_message(demand, candidates), details={
            "requested": requested(demand),
            "most_free": placement.most_free(candidates, demand),
            "hosts": {r.name: r.reason for r in candidates}})
    host = next(h for h in hosts if h.id == chosen.host_id)
    guest = new_guest(session, actor, name, entry, host, purpose, utcnow() + dt.timedelta(days=days), launch)
    session.flush()
    audit_checkout(session, actor, guest, entry, days)
    return guest


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
    launch = Launch(hash_token(token), ctx.process_id, catalog.record_for(name))

    def claim(session: Session) -> Guest:
        return in_savepoint(session, lambda: _claim(session, actor, ctx.config, name, entry, days, purpose, launch,
                                                    unfit),
                            lambda: refuse_taken_name(session, name))

    try:
        guest = await ctx.db.run(claim, lock=True)
    except NoCapacity as exc:
        await ctx.db.run(record_refusal, actor, "guest", name, entry.name, exc.message)
        raise
    start_provisioning(ctx, guest, entry, token)
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
