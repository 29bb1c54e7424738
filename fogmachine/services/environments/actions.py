"""What a user does to an environment as a whole: see it, extend its lease, start or stop it, delete it.

An environment is seen by its owner and administrators; another user gets
NotFound, as for a guest. Its actions are its guests' actions done in order,
through the same services a single guest uses (``lifecycle``), so the rules,
the audit lines and the teardown are theirs: start goes tier by tier, first
tier first (a database before the application that needs it), stop goes the
other way; delete retires the environment at once (no tier starts after
that, in any process: the engine re-checks it under a lock) and then deletes
every guest of it, the last tier first, a guest still being provisioned
included. A single guest's own actions still work from its page.

One lease: extending the environment sets the new expiry on every live guest
of it, so they end together (``expiry`` retires them, the engine then
retires the environment).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db.models import IN_PROGRESS_STEPS, Environment, Guest, GuestState, Step, utcnow
from fogmachine.errors import Conflict, FogmachineError, NotFound, PartlyDone, ValidationError
from fogmachine.services import audit, lifecycle
from fogmachine.services.actor import Actor
from fogmachine.services.environments.engine import FAILED, PROVISIONING, READY, RETIRED
from fogmachine.services.reservations import extended, validate_days
from fogmachine.timestamps import iso_utc

POWER_ACTIONS = ("start", "stop")


def get_environment(session: Session, actor: Actor, env_id: int, *, for_update: bool = False) -> Environment:
    """The environment, or NotFound when it does not exist or ``actor`` may not see it."""
    query = select(Environment).where(Environment.id == env_id)
    if for_update:
        query = query.with_for_update()
    env = session.scalar(query)
    if env is None or not actor.may_act_on(env.owner_id):
        raise NotFound(f"no environment with id {env_id}")
    return env


def _guests(session: Session, env_id: int) -> list[Guest]:
    return list(session.scalars(select(Guest).options(joinedload(Guest.host))
                                .where(Guest.environment_id == env_id).order_by(Guest.tier, Guest.tier_index)))


def tier_state(guests: Sequence[Guest]) -> str:
    """One word for a tier, as the environment's ladder shows it: waiting, provisioning, ready, failed,
    retired."""
    steps = {g.step for g in guests}
    if Step.FAILED in steps:
        return FAILED
    if steps <= {Step.RETIRED}:
        return RETIRED
    if steps <= {Step.READY, Step.RETIRED}:
        return READY
    if steps <= {Step.WAITING}:
        return "waiting"
    return PROVISIONING


def _guest_brief(guest: Guest) -> dict[str, Any]:
    return {"id": guest.id, "name": guest.name, "step": guest.step, "step_reason": guest.step_reason,
            "state": guest.state, "host": guest.host.name if guest.host is not None else None, "ip": guest.ip,
            "hostname": guest.hostname, "tier_index": guest.tier_index}


def environment_to_dict(session: Session, env: Environment) -> dict[str, Any]:
    """The environment as the API shows it: its own step, and its tiers in order, each with its guests."""
    guests = _guests(session, env.id)
    tiers = (json.loads(env.spec or "{}").get("tiers") or [])
    ladder = []
    for index, tier in enumerate(tiers):
        members = [g for g in guests if g.tier == index]
        ladder.append({"index": index, "name": tier.get("name", ""), "target": tier.get("target", ""),
                       "count": tier.get("count", len(members)), "anti_affinity": bool(tier.get("anti_affinity")),
                       "variables": sorted((tier.get("variables") or {}).keys()),
                       "state": tier_state(members), "guests": [_guest_brief(g) for g in members]})
    return {
        "id": env.id, "name": env.name, "owner": env.owner.username if env.owner is not None else None,
        "template": env.template_name, "purpose": env.purpose, "step": env.step, "step_reason": env.step_reason,
        "tier": env.tier, "keep_failed": env.keep_failed, "tiers": ladder,
        "created_at": iso_utc(env.created_at), "expires_at": iso_utc(env.expires_at) if env.expires_at else None,
        "retired_at": iso_utc(env.retired_at) if env.retired_at else None, "updated_at": iso_utc(env.updated_at),
    }


def list_environments(session: Session, actor: Actor, *, include_retired: bool = False) -> list[Environment]:
    """The actor's environments (administrators: everyone's), oldest first."""
    query = select(Environment).options(joinedload(Environment.owner)).order_by(Environment.id)
    if not actor.is_admin:
        query = query.where(Environment.owner_id == actor.user_id)
    if not include_retired:
        query = query.where(Environment.step != RETIRED)
    return list(session.scalars(query))


def show(session: Session, actor: Actor, env_id: int) -> dict[str, Any]:
    return environment_to_dict(session, get_environment(session, actor, env_id))


# -- the lease --------------------------------------------------------------------------------------

def extend(session: Session, config: Config, actor: Actor, env_id: int, days: object) -> dict[str, Any]:
    """Add ``days`` to the environment's expiry (never past the longest lease after its checkout) and give
    every live guest of it that expiry."""
    actor.require_write()
    env = get_environment(session, actor, env_id, for_update=True)
    days = validate_days(days, config.max_days)
    if env.step == RETIRED:
        raise Conflict(f"environment {env.name} is retired and cannot be extended")
    new_expiry = extended(env.name, env.expires_at, env.created_at, days, config.max_lease_days)
    env.expires_at = new_expiry
    for guest in session.scalars(select(Guest).where(Guest.environment_id == env.id, Guest.step != Step.RETIRED)
                                 .with_for_update()):
        guest.expires_at = new_expiry
    audit.record(session, actor, "environment.extend", object_type="environment", object_id=env.id,
                 object_name=env.name, message=f"+{days} days, now expires {new_expiry:%Y-%m-%d %H:%M} UTC")
    return environment_to_dict(session, env)


# -- power, in tier order ----------------------------------------------------------------------------

def _power_plan(session: Session, actor: Actor, env_id: int, action: str) -> list[int]:
    """The guests ``action`` goes to, in its order: those that are ready (and so have a domain)."""
    env = get_environment(session, actor, env_id)
    if env.step == RETIRED:
        raise Conflict(f"environment {env.name} is retired")
    ids = [g.id for g in _guests(session, env_id) if g.step == Step.READY and g.domain_name is not None]
    return ids if action == "start" else list(reversed(ids))


async def power(ctx: Context, actor: Actor, env_id: int, action: str) -> dict[str, Any]:
    """Start (first tier first) or stop (last tier first) every ready guest of the environment. A guest
    already so is passed over; any other refusal stops the sequence there with its error, named."""
    if action not in POWER_ACTIONS:
        raise ValidationError(f"unknown action {action!r}; one of {', '.join(POWER_ACTIONS)}", field="action")
    actor.require_write()
    for guest_id in await ctx.db.run(_power_plan, actor, env_id, action):
        state = await ctx.db.run(_state_of, guest_id)
        if action == "start" and state in (GuestState.RUNNING, GuestState.BLOCKED):
            continue
        if action == "stop" and state in (GuestState.SHUTOFF, GuestState.SHUTDOWN):
            continue
        await lifecycle.perform(ctx, actor, guest_id, action)
    await ctx.db.run(_record_power, actor, env_id, action, lock=True)
    return await ctx.db.run(show, actor, env_id)


def _state_of(session: Session, guest_id: int) -> str:
    guest = session.get(Guest, guest_id)
    return guest.state if guest is not None else ""


def _record_power(session: Session, actor: Actor, env_id: int, action: str) -> None:
    env = get_environment(session, actor, env_id)
    audit.record(session, actor, f"environment.{action}", object_type="environment", object_id=env.id,
                 object_name=env.name, message="first tier first" if action == "start" else "last tier first")


# -- delete ---------------------------------------------------------------------------------------

def _retire(session: Session, actor: Actor, env_id: int) -> list[tuple[int, bool]]:
    """The environment is retired now (no tier starts after this); the guests to delete, last tier first."""
    env = get_environment(session, actor, env_id, for_update=True)
    if env.step == RETIRED:
        raise Conflict(f"environment {env.name} is retired; its record is kept as history")
    was = env.step
    env.step, env.live_name, env.retired_at = RETIRED, None, utcnow()
    env.step_reason = f"deleted by {actor.username}" + (f" ({was}: {env.step_reason})" if was == FAILED else "")
    audit.record(session, actor, "environment.delete", object_type="environment", object_id=env.id,
                 object_name=env.name, message=f"was {was}; its guests are deleted, the last tier first")
    return [(g.id, g.step in IN_PROGRESS_STEPS) for g in reversed(_guests(session, env_id)) if g.step != Step.RETIRED]


async def delete(ctx: Context, actor: Actor, env_id: int) -> None:
    """Retire the environment and delete all its guests (see the module's docstring). A guest whose parts
    could not all be removed is still retired (lifecycle.delete); the answer is then PartlyDone naming them."""
    actor.require_write()
    guests = await ctx.db.run(_retire, actor, env_id, lock=True)
    # The owner may delete the environment's guests while they are provisioned: this is the owner's
    # environment-wide delete, decided above; the guests' own rule (force, for administrators) would refuse.
    # Only those: a ready guest whose host is down is refused as any guest's delete is (it may run there).
    forcing = Actor(user_id=actor.user_id, username=actor.username, is_admin=True, remote_addr=actor.remote_addr)
    troubles: list[str] = []
    first: FogmachineError | None = None
    for guest_id, provisioning in guests:
        try:
            await lifecycle.delete(ctx, forcing if provisioning else actor, guest_id, force=provisioning)
        except FogmachineError as exc:
            troubles.append(exc.message)
            first = first or exc
    if first is not None:
        raise PartlyDone(f"the environment is deleted; some guests left parts behind: {'; '.join(troubles)}",
                         first, details={"deleted": True, "errors": troubles})


__all__ = ["FAILED", "POWER_ACTIONS", "PROVISIONING", "READY", "RETIRED", "delete", "environment_to_dict",
           "extend", "get_environment", "list_environments", "power", "show", "tier_state"]
