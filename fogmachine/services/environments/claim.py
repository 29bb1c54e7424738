"""Checking an environment out: every tier's capacity claimed in ONE transaction, or nothing (issue 14).

Before the transaction, as a guest's checkout does: validate the request
(the environment's name, and every guest name the tiers' patterns make of
it), find the template the actor may use, and ask the catalog's source
(fresh) for each tier's entry and which hosts cannot hold its disk.

Then one locked unit of work: lock the hosts (``placement.lock_hosts``, the
same turn every checkout takes), refuse names already live, place every guest
in tier order (``placement.place_group``: each guest sees the capacity the
ones before it took, a tier with anti-affinity gets distinct hosts), and
insert the environment and all its guests. A guest that fits nowhere is a
``NoCapacity`` naming its tier and what the best host had free; the unit
rolls back, so nothing of the environment exists, and the refusal is
audited as a guest's is. Two processes sharing the database take turns on
the same host rows, so an environment is always whole or absent.

Every guest is a row as a guest of its own gets (``checkout.claim.new_guest``),
holding its capacity at step ``waiting``: no domain name, phone-home token,
catalog record or worker yet, so nothing outside the row exists to reconcile
or tear down; the environment is at tier -1. Once the claim commits, the
environment engine (``engine``) is poked and starts tier 0, as it starts
every later tier once the one before is ready: one way to start a tier, and
tier 0's variables (``{{ env.name }}``, ``{{ owner.username }}``) are rendered
like any tier's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine import placement
from fogmachine.catalog import CatalogEntry
from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db.models import Environment, EnvTemplate, Guest, utcnow
from fogmachine.errors import Conflict, NoCapacity, NotFound, PermissionDenied, ValidationError
from fogmachine.services import audit, diskimages
from fogmachine.services.actor import Actor
from fogmachine.services.checkout.claim import (
    NAME_RE,
    audit_checkout,
    in_savepoint,
    new_guest,
    record_refusal,
    requested,
    validate_name,
    validate_purpose,
)
from fogmachine.services.environments import engine
from fogmachine.services.environments import spec as specmod
from fogmachine.services.reservations import validate_days

MAX_TEMPLATE_NAME = 63  # env_templates.name
PROVISIONING = "provisioning"  # the environment's step while its tiers are on their way


@dataclass(frozen=True)
class EnvironmentRequest:
    template: str
    name: str
    days: Any
    purpose: str
    keep_failed: bool = False


@dataclass(frozen=True)
class StoredTemplate:
    """A template as the claim uses it, read out of its row (no ORM object crosses threads)."""

    id: int
    name: str
    spec: specmod.TemplateSpec


@dataclass(frozen=True)
class Seat:
    """One guest of the environment, decided before the transaction: its name, tier, place in the tier
    (0 first), catalog entry and the hosts that cannot hold its disk."""

    name: str
    tier: int
    tier_name: str
    index: int
    anti_affinity: bool
    entry: CatalogEntry
    unfit: Mapping[str, str]

    @property
    def demand(self) -> placement.Demand:
        return placement.Demand(self.entry.ram_mb, self.entry.vcpus, self.entry.virt_type)


@dataclass(frozen=True)
class _Order:
    """Everything the transaction needs, validated."""

    name: str
    days: int
    purpose: str
    keep_failed: bool
    template: StoredTemplate
    seats: tuple[Seat, ...]


# -- before the transaction ------------------------------------------------------------------------

def _validate(req: EnvironmentRequest, config: Config) -> tuple[str, int, str, bool, str]:
    """(name, days, purpose, keep_failed, template name), or ValidationError naming the first bad field."""
    name = validate_name(req.name)
    days = validate_days(req.days, config.max_days)
    purpose = validate_purpose(req.purpose)
    if not isinstance(req.keep_failed, bool):
        raise ValidationError("keep_failed must be true or false", field="keep_failed")
    if not isinstance(req.template, str) or not req.template.strip():
        raise ValidationError("template (an environment template's name) is required", field="template")
    template = req.template.strip()
    if len(template) > MAX_TEMPLATE_NAME:
        raise ValidationError(f"template names are at most {MAX_TEMPLATE_NAME} characters", field="template")
    return name, days, purpose, req.keep_failed, template


def load_template(session: Session, actor: Actor, name: str) -> StoredTemplate:
    """The template ``name`` if ``actor`` may use it (a shared one, their own, or any for an administrator);
    NotFound otherwise, the same answer as for no such template, so names cannot be probed."""
    row = session.scalar(select(EnvTemplate).where(EnvTemplate.name == name))
    if row is None or not (row.owner_id is None or actor.is_admin or row.owner_id == actor.user_id):
        raise NotFound(f"no environment template named {name!r}")
    try:
        parsed = specmod.parse(json.loads(row.spec))
    except (ValueError, ValidationError) as exc:  # stored valid; a rule tightened since may refuse it now
        reason = exc.message if isinstance(exc, ValidationError) else f"its stored spec is not JSON: {exc}"
        raise Conflict(f"environment template {name} is no longer valid ({reason}); an administrator must "
                       "correct it") from None
    return StoredTemplate(row.id, row.name, parsed)


def guest_names(template: specmod.TemplateSpec, env: str) -> list[list[str]]:
    """Every guest's name, tier by tier, or ValidationError (field ``name``) saying which name would be bad."""
    tiers: list[list[str]] = []
    made: dict[str, str] = {}  # guest name -> the tier that makes it
    for tier in template.tiers:
        names = []
        for n in range(1, tier.count + 1):
            guest = tier.guest_name(env, n)
            if not NAME_RE.fullmatch(guest):
                raise ValidationError(
                    f"the environment's name {env} would name guest {n} of tier {tier.name} {guest!r}, which is not "
                    "a valid guest name (a DNS label: 1 to 63 lower-case letters, digits or '-', starting with a "
                    "letter and not ending with '-')", field="name", details={"tier": tier.name, "guest": guest})
            if guest in made:
                raise ValidationError(f"tiers {made[guest]} and {tier.name} would both name a guest {guest}",
                                      field="name", details={"tier": tier.name, "guest": guest})
            made[guest] = tier.name
            names.append(guest)
        tiers.append(names)
    return tiers


async def _entries(ctx: Context, template: specmod.TemplateSpec) -> dict[str, tuple[CatalogEntry, dict[str, str]]]:
    """Each tier's target -> its catalog entry (resolved afresh) and the hosts that cannot hold its disk.
    A target the source does not have is a ValidationError naming the first tier that asks for it."""
    catalog = ctx.need_catalog()
    found: dict[str, tuple[CatalogEntry, dict[str, str]]] = {}
    for tier in template.tiers:
        if tier.target in found:
            continue
        try:
            entry = await catalog.resolve(tier.target)
        except ValidationError as exc:
            raise ValidationError(f"tier {tier.name}: {exc.message}", field="template",
                                  details={"tier": tier.name, "target": tier.target}) from None
        found[tier.target] = (entry, await diskimages.hosts_without_pool(ctx, entry))
    return found


def _seats(template: specmod.TemplateSpec, names: list[list[str]],
           entries: Mapping[str, tuple[CatalogEntry, dict[str, str]]]) -> tuple[Seat, ...]:
    """Every guest's seat, in tier order."""
    seats: list[Seat] = []
    for number, (tier, tier_guests) in enumerate(zip(template.tiers, names, strict=True)):
        entry, unfit = entries[tier.target]
        for index, guest_name in enumerate(tier_guests):
            seats.append(Seat(guest_name, number, tier.name, index, tier.anti_affinity, entry, unfit))
    return tuple(seats)


# -- the claim: one transaction -------------------------------------------------------------------

def _refuse_taken_names(session: Session, order: _Order) -> None:
    if session.scalar(select(Environment.id).where(Environment.live_name == order.name)) is not None:
        raise ValidationError(f"an environment named {order.name} already exists", field="name")
    wanted = [seat.name for seat in order.seats]
    taken = sorted(n for n in session.scalars(select(Guest.live_name).where(Guest.live_name.in_(wanted))) if n)
    if taken:
        raise ValidationError(f"a guest named {taken[0]} already exists: environment {order.name} would name one "
                              "of its guests so", field="name", details={"guests": taken})


def _hosts_with_domains(session: Session, names: Sequence[str]) -> dict[str, set[int]]:
    """Guest name -> the hosts that already have a domain of that name (someone else's): they cannot take it."""
    found: dict[str, set[int]] = {}
    for domain, host_id in session.execute(select(Guest.domain_name, Guest.host_id).where(
            Guest.domain_name.in_(list(names)))):
        if domain is not None and host_id is not None:
            found.setdefault(domain, set()).add(host_id)
    return found


def _no_room(seat: Seat, candidates: Sequence[placement.Room]) -> NoCapacity:
    demand = seat.demand
    return NoCapacity(
        f"tier {seat.tier_name} cannot be placed: its guest {seat.name} does not fit "
        f"({placement.no_room_message(demand, list(candidates))}); nothing of the environment was claimed",
        details={"tier": seat.tier_name, "guest": seat.name, "requested": requested(demand),
                 "most_free": placement.most_free(candidates, demand),
                 "hosts": {r.name: r.reason for r in candidates}})


def _claim(session: Session, actor: Actor, config: Config, order: _Order) -> Environment:
    hosts = placement.lock_hosts(session)  # from here on, checkouts (of guests and environments) take turns
    # The template may not go while its environment is made (a delete waits; SQLite's write lock is held).
    if session.scalar(select(EnvTemplate.id).where(EnvTemplate.id == order.template.id)
                      .with_for_update(read=True)) is None:
        raise NotFound(f"no environment template named {order.template.name!r} (it was just deleted)")
    _refuse_taken_names(session, order)
    usage = placement.usage_by_host(session, [h.id for h in hosts])
    clashing = _hosts_with_domains(session, [seat.name for seat in order.seats])
    members = [placement.Member(seat.demand, apart=f"tier {seat.tier_name}" if seat.anti_affinity else "",
                                excluded=frozenset(clashing.get(seat.name, ())), unfit=seat.unfit)
               for seat in order.seats]
    placed = placement.place_group(hosts, usage, members, config.cpu_overcommit, config.placement_policy)
    if placed.refused is not None:
        raise _no_room(order.seats[placed.refused], placed.candidates)
    expires_at = utcnow() + dt.timedelta(days=order.days)
    template = order.template
    env = Environment(
        name=order.name, live_name=order.name, owner_id=actor.user_id, template_id=template.id,
        template_name=template.name, spec=json.dumps(template.spec.to_dict()), purpose=order.purpose,
        expires_at=expires_at, step=PROVISIONING, step_reason="", tier=-1, keep_failed=order.keep_failed,
        guests=[])  # loaded (empty) now, so the caller gets the guests the loop below appends
    session.add(env)
    host_by_id = {h.id: h for h in hosts}
    guests: list[Guest] = []
    for seat, room in zip(order.seats, placed.chosen, strict=True):
        guest = new_guest(session, actor, seat.name, seat.entry, host_by_id[room.host_id], order.purpose, expires_at,
                          None, [g.mac or "" for g in guests])
        guest.environment, guest.tier, guest.tier_index = env, seat.tier, seat.index
        guests.append(guest)
    session.flush()
    tiers = ", ".join(f"{t.name} x{t.count}" for t in template.spec.tiers)
    audit.record(session, actor, "environment.checkout", object_type="environment", object_id=env.id,
                 object_name=env.name, message=f"template {template.name} for {order.days} day(s): "
                                               f"{len(order.seats)} guest(s) in tiers {tiers}")
    for seat, guest in zip(order.seats, guests, strict=True):
        audit_checkout(session, actor, guest, seat.entry, order.days,
                       note=f"; environment {env.name}, tier {seat.tier_name}")
    return env


# -- the public entry point ------------------------------------------------------------------------

async def checkout_environment(ctx: Context, actor: Actor, req: EnvironmentRequest) -> Environment:
    """Validate, place every tier and claim it all; return the new environment (its ``guests`` loaded,
    each with its host) and provision tier 0 in the background. Raises ValidationError (400), NotFound
    (404: no such template for this actor), NoCapacity (409: which tier, and what the best host had free)
    or the catalog's backend error (502)."""
    actor.require_write()
    if actor.user_id is None:
        raise PermissionDenied("an environment needs an owner: check out as a user")
    name, days, purpose, keep_failed, template_name = _validate(req, ctx.config)
    template = await ctx.db.run(load_template, actor, template_name)
    names = guest_names(template.spec, name)
    entries = await _entries(ctx, template.spec)
    seats = _seats(template.spec, names, entries)
    order = _Order(name, days, purpose, keep_failed, template, seats)

    def claim(session: Session) -> Environment:
        return in_savepoint(session, lambda: _claim(session, actor, ctx.config, order),
                            lambda: _refuse_taken_names(session, order))

    try:
        env = await ctx.db.run(claim, lock=True)
    except NoCapacity as exc:
        await ctx.db.run(record_refusal, actor, "environment", name, f"template {template.name}", exc.message)
        raise
    engine.poke(ctx, env.id)  # tier 0 starts at once, as every tier does (the engine)
    return env
