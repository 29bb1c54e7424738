"""What the environment pages show: the list, one environment's sentence and tier ladder, and the small
summary its open page fetches again as its guests change.

Like ``guestview`` for a guest, this reads; the rules of who sees what are
``environments.actions``' (an environment is its owner's and the
administrators'; anyone else gets the same NotFound as for one that does not
exist). ``status_sentence`` and ``progress`` are pure functions of the
environment's step, tier and tier names, so every combination is tested
without a host, and the page, its live summary and the list say the same.

The summary (``summary``) exists because the live feed follows guests, not
environments: an open page hears that one of its guests changed and asks for
the environment again. Most of an environment's moves are written together
with a guest's (a tier starts in the same commit as its guests leave
``waiting``), but a few are not (the last tier ready makes the environment
ready a moment later, in a commit of its own), so ``following`` tells the
page when to keep asking without news of a guest.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from fogmachine.db.models import Environment, Guest, Step
from fogmachine.errors import ValidationError
from fogmachine.services.actor import Actor
from fogmachine.services.environments import actions
from fogmachine.services.environments import spec as specmod
from fogmachine.services.environments.actions import FAILED, PROVISIONING, READY, RETIRED
from fogmachine.services.guests import guest_to_dict
from fogmachine.timestamps import iso_utc


def tier_names(spec_json: str) -> list[str]:
    """The tiers' names in order, from an environment's copy of its template; [] for one that no longer
    parses (a rule tightened since), so a page still shows what it can."""
    try:
        return [tier.name for tier in specmod.parse(json.loads(spec_json or "{}")).tiers]
    except (ValueError, ValidationError):
        return []


def _tier_label(tier: int, names: list[str]) -> tuple[int, str]:
    """(number from 1, name) of tier ``tier`` (0 first; -1, before the first starts, counts as the first)."""
    current = max(tier, 0)
    if names:
        current = min(current, len(names) - 1)
    name = names[current] if current < len(names) else str(current + 1)
    return current + 1, name


def status_sentence(step: str, tier: int, names: list[str], reason: str = "", *, keep_failed: bool = False) -> str:
    """The environment in one sentence: "Provisioning tier 2 of 3 (web)", "Ready: all 3 tiers are ready",
    "Failed: its guests are kept for inspection", "Retired: deleted by alice"."""
    total = len(names)
    if step == PROVISIONING:
        number, name = _tier_label(tier, names)
        return f"Provisioning tier {number} of {total or number} ({name})"
    if step == READY:
        return "Ready: its tier is ready" if total == 1 else f"Ready: all {total} tiers are ready"
    if step == FAILED:
        return ("Failed: its guests are kept for inspection" if keep_failed
                else "Failed: the guests it made are deleted")
    if step == RETIRED:
        return f"Retired: {reason}" if reason else "Retired"
    return step.capitalize()


def progress(step: str, tier: int, names: list[str]) -> str:
    """Where the tiers are, for the list: "tier 2 of 3: web", "3 of 3 tiers ready", "failed in tier 2 of 3:
    web", "3 tiers"."""
    total = len(names)
    number, name = _tier_label(tier, names)
    if step == PROVISIONING:
        return f"tier {number} of {total or number}: {name}"
    if step == READY:
        return f"{total} of {total} tiers ready"
    if step == FAILED:
        return f"failed in tier {number} of {total or number}: {name}"
    return f"{total} tier{'' if total == 1 else 's'}"


def reason_line(step: str, reason: str, sentence: str) -> str:
    """The reason on a line of its own: always for a failed environment, else when the sentence does not
    already say it."""
    if not reason:
        return ""
    if step == FAILED:
        return reason
    return "" if reason in sentence else reason


def following(env: Environment, guests: list[Guest]) -> bool:
    """True while the environment's step may change without any of its guests changing (it is on its way, or
    every guest is retired and the environment is about to be): the open page keeps asking then."""
    if env.step == PROVISIONING:
        return True
    return env.step != RETIRED and bool(guests) and all(g.step == Step.RETIRED for g in guests)


def _guests(session: Session, env_id: int) -> list[Guest]:
    return list(session.scalars(select(Guest).options(joinedload(Guest.host), joinedload(Guest.owner))
                                .where(Guest.environment_id == env_id).order_by(Guest.tier, Guest.tier_index)))


def _status(env: Environment, names: list[str]) -> dict[str, str]:
    sentence = status_sentence(env.step, env.tier, names, env.step_reason, keep_failed=env.keep_failed)
    return {"sentence": sentence, "reason": reason_line(env.step, env.step_reason, sentence)}


def environment_rows(session: Session, actor: Actor) -> list[dict[str, Any]]:
    """The environments list: the actor's live environments (administrators: everyone's), oldest first."""
    rows = []
    for env in actions.list_environments(session, actor):
        names = tier_names(env.spec)
        rows.append({"id": env.id, "name": env.name, "owner": env.owner.username if env.owner else None,
                     "template": env.template_name, "purpose": env.purpose, "step": env.step,
                     "reason": env.step_reason, "progress": progress(env.step, env.tier, names),
                     "expires_at": iso_utc(env.expires_at), "created_at": iso_utc(env.created_at)})
    return rows


def environment_page(session: Session, actor: Actor, env_id: int) -> dict[str, Any]:
    """The environment page's data: the environment as the API shows it, its sentence and reason, and its
    tiers in order, each with its guests as the guest lists show them; NotFound for another user's."""
    env = actions.get_environment(session, actor, env_id)
    shown = actions.environment_to_dict(session, env)
    guests = _guests(session, env.id)
    tiers = [{**tier, "guests": [guest_to_dict(g) for g in guests if g.tier == tier["index"]]}
             for tier in shown["tiers"]]
    return {"env": shown, "tiers": tiers, **_status(env, tier_names(env.spec)),
            "retired": env.step == RETIRED, "following": following(env, guests),
            "guest_ids": [g.id for g in guests]}


def summary(session: Session, actor: Actor, env_id: int) -> dict[str, Any]:
    """What the open environment page puts in place when it hears of a change: the sentence, the reason,
    each tier's state, the lease, and whether to keep asking (``following``)."""
    env = actions.get_environment(session, actor, env_id)
    guests = _guests(session, env.id)
    names = tier_names(env.spec)
    tiers = [{"index": index, "name": name,
              "state": actions.tier_state([g for g in guests if g.tier == index])} for index, name in enumerate(names)]
    return {"id": env.id, "step": env.step, **_status(env, names), "tiers": tiers,
            "expires_at": iso_utc(env.expires_at) if env.expires_at else None,
            "retired": env.step == RETIRED, "following": following(env, guests)}


def membership(guest: Guest) -> dict[str, Any] | None:
    """"Part of environment lab1 (tier web)": the environment a guest belongs to, for its page; None for a
    guest of its own. The caller has checked that the actor may see the guest (and so its environment:
    they have one owner)."""
    env = guest.environment
    if env is None:
        return None
    names = tier_names(env.spec)
    tier = guest.tier if guest.tier is not None else 0
    return {"id": env.id, "name": env.name, "tier": names[tier] if 0 <= tier < len(names) else str(tier)}
