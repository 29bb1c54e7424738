"""Environment templates: who may see and change which, and saving one whole.

A template is read and written whole (``PUT`` semantics: ``save`` creates it
or replaces what is there), so there is never a half-edited one: its spec is
checked as the API's error shape wants it (``spec.parse``, the variables'
``variables.check``, each tier's catalog entry resolved through the catalog
source) before the one unit of work that writes it and its audit line.

Who: administrators manage the shared templates (``owner_id`` NULL) and may
change or delete anyone's; a user may keep private templates of their own
only when the ``user_templates`` setting allows it (403 otherwise), and sees
the shared ones and their own. Another user's private template answers 404
to a read, like one that does not exist; its name, being unique, answers 409
to a save.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db.models import Environment, EnvTemplate, utcnow
from fogmachine.errors import Conflict, NotFound, PermissionDenied, ValidationError
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.services.checkout.claim import validate_name
from fogmachine.services.environments import spec as specmod
from fogmachine.services.environments.spec import TemplateSpec
from fogmachine.timestamps import iso_utc

MAX_DESCRIPTION = 2000
# Line breaks and tabs are a description's own; every other control or separator character is refused
# (an escape sequence would reach an operator's terminal through the YAML export, a NEL would not survive it).
_DESCRIPTION_WHITESPACE = frozenset("\n\t")


@dataclass(frozen=True)
class TemplateView:
    """A template as the API, the pages and the files show it (read inside its unit of work)."""

    id: int
    name: str
    description: str
    owner: str | None  # the owner's username; None for a shared template
    spec: TemplateSpec
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def shared(self) -> bool:
        return self.owner is None


def template_to_dict(view: TemplateView) -> dict[str, Any]:
    return {
        "id": view.id, "name": view.name, "description": view.description, "owner": view.owner,
        "shared": view.shared, "guest_count": view.spec.guest_count, **view.spec.to_dict(),
        "created_at": iso_utc(view.created_at), "updated_at": iso_utc(view.updated_at),
    }


# -- validation ------------------------------------------------------------------------------------

def validate_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise ValidationError("description must be text", field="description")
    text = description.strip()
    if len(text) > MAX_DESCRIPTION:
        raise ValidationError(f"description must be at most {MAX_DESCRIPTION} characters", field="description")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") and c not in _DESCRIPTION_WHITESPACE for c in text):
        raise ValidationError("description must not contain control characters (line breaks and tabs are fine)",
                              field="description")
    return text


async def _resolve_targets(ctx: Context, spec: TemplateSpec) -> None:
    """Every tier's catalog entry must exist now; an unknown one is a 400 on that tier's ``target``.
    A source that cannot be asked answers its own error (502, 504): nothing is saved unchecked."""
    catalog = ctx.need_catalog()
    known: set[str] = set()
    for index, tier in enumerate(spec.tiers):
        if tier.target in known:
            continue
        try:
            await catalog.resolve(tier.target)
        except ValidationError as exc:
            raise ValidationError(f"tiers[{index}] ({tier.name}): {exc.message}", field=f"tiers[{index}].target",
                                  details={"tier": tier.name, "target": tier.target}) from None
        known.add(tier.target)


async def validate(ctx: Context, spec_data: Any) -> TemplateSpec:
    """The spec of a template from what a client sent, fully checked (structure, variables, targets)."""
    spec = specmod.parse(spec_data)
    # Compiling up to 500 expressions is CPU work of up to about a second: not on the IOLoop.
    from fogmachine.services.environments import variables  # Jinja2, loaded when first needed (facts.py)

    await asyncio.to_thread(variables.check, spec)
    await _resolve_targets(ctx, spec)
    return spec


# -- permissions -----------------------------------------------------------------------------------

def _require_may_keep(actor: Actor, config: Config) -> None:
    actor.require_write()
    if actor.is_admin:
        return
    if actor.user_id is None:
        raise PermissionDenied("log in to manage environment templates")
    if not config.user_templates:
        raise PermissionDenied("only administrators manage environment templates on this server (the setting "
                               "user_templates lets users keep private ones)")


def _require_may_change(actor: Actor, row: EnvTemplate) -> None:
    if actor.is_admin or (row.owner_id is not None and row.owner_id == actor.user_id):
        return
    if row.owner_id is None:
        raise PermissionDenied(f"environment template {row.name} is shared: only administrators may change it")
    raise Conflict(f"the name {row.name} is taken by another user's template: choose another",
                   details={"field": "name"})


def may_write(actor: Actor, config: Config, view: TemplateView | None = None) -> bool:
    """Whether ``save`` would let ``actor`` write ``view`` (None: a new template): the same rules, for a page
    to offer its editor and import only to whom they are allowed. ``save`` still checks them itself."""
    try:
        _require_may_keep(actor, config)
    except PermissionDenied:
        return False
    return view is None or actor.is_admin or (view.owner is not None and view.owner == actor.username)


def _may_see(actor: Actor, row: EnvTemplate) -> bool:
    return actor.is_admin or row.owner_id is None or row.owner_id == actor.user_id


def _visible(actor: Actor) -> ColumnElement[bool]:
    """``_may_see`` in SQL, for the list."""
    if actor.is_admin:
        return true()
    return or_(EnvTemplate.owner_id.is_(None), EnvTemplate.owner_id == actor.user_id)


# -- reading ---------------------------------------------------------------------------------------

def _view(row: EnvTemplate) -> TemplateView:
    return TemplateView(id=row.id, name=row.name, description=row.description,
                        owner=row.owner.username if row.owner is not None else None,
                        spec=specmod.parse(json.loads(row.spec)), created_at=row.created_at,
                        updated_at=row.updated_at)


def _find(session: Session, name: str) -> EnvTemplate | None:
    return session.scalars(select(EnvTemplate).where(EnvTemplate.name == name)
                           .options(selectinload(EnvTemplate.owner))).first()


def list_templates(session: Session, actor: Actor, offset: int = 0, limit: int = 100) -> tuple[list[TemplateView],
                                                                                                int]:
    """The templates ``actor`` may see, by name, and how many there are in all."""
    visible = _visible(actor)
    total = session.scalar(select(func.count()).select_from(EnvTemplate).where(visible)) or 0
    rows = session.scalars(select(EnvTemplate).where(visible).options(selectinload(EnvTemplate.owner))
                           .order_by(EnvTemplate.name).offset(offset).limit(limit))
    return [_view(row) for row in rows], total


def get_template(session: Session, actor: Actor, name: str) -> TemplateView:
    """The template, or NotFound when there is none of that name or ``actor`` may not see it."""
    row = _find(session, name)
    if row is None or not _may_see(actor, row):
        raise NotFound(f"no environment template named {name}")
    return _view(row)


# -- writing ---------------------------------------------------------------------------------------

def _summary(spec: TemplateSpec) -> str:
    return ", ".join(f"{tier.name} x{tier.count} ({tier.target})" for tier in spec.tiers)


def _insert(session: Session, row: EnvTemplate) -> None:
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # Two creates of one name at once: the unique name is the database's own guard; the loser is told.
        raise Conflict(f"an environment template named {row.name} was just created by someone else: "
                       "read it, then save again", details={"field": "name"}) from None


def _save(session: Session, actor: Actor, name: str, description: str, spec: TemplateSpec) -> TemplateView:
    row = _find(session, name)
    stored = json.dumps(spec.to_dict())
    if row is None:
        row = EnvTemplate(name=name, description=description, spec=stored,
                          owner_id=None if actor.is_admin else actor.user_id)
        _insert(session, row)
        done = "created"
    else:
        _require_may_change(actor, row)
        row.description, row.spec, row.updated_at = description, stored, utcnow()
        done = "replaced"
    audit.record(session, actor, "envtemplate.save", object_type="envtemplate", object_id=row.id,
                 object_name=name, message=f"{done}: {_summary(spec)}")
    session.flush()
    return _view(row)


async def save(ctx: Context, actor: Actor, name: Any, description: Any, spec_data: Any) -> TemplateView:
    """Create the template ``name`` or replace it whole; returns it as saved.

    PermissionDenied (403) for a user when ``user_templates`` is off or the template is shared,
    ValidationError (400, naming the field: ``tiers[1].variables.db_host``, ``tiers[0].target``) for
    anything wrong in it, Conflict (409) when the name is another user's.
    """
    _require_may_keep(actor, ctx.config)
    name = validate_name(name)
    description = validate_description(description)
    spec = await validate(ctx, spec_data)
    return await ctx.db.run(_save, actor, name, description, spec, lock=True)


def _delete(session: Session, actor: Actor, name: str) -> None:
    row = _find(session, name)
    if row is None or not _may_see(actor, row):
        raise NotFound(f"no environment template named {name}")
    _require_may_change(actor, row)
    # Environments made from it keep their copy of the spec and the template's name; only the link goes
    # (the column's ON DELETE SET NULL, said here too for SQLite connections without foreign keys).
    session.execute(update(Environment).where(Environment.template_id == row.id).values(template_id=None))
    audit.record(session, actor, "envtemplate.delete", object_type="envtemplate", object_id=row.id,
                 object_name=name, message=_summary(specmod.parse(json.loads(row.spec))))
    session.delete(row)


async def delete(ctx: Context, actor: Actor, name: str) -> None:
    """Delete the template (environments made from it live on): 403, 404 as ``save`` and ``get_template``."""
    _require_may_keep(actor, ctx.config)
    await ctx.db.run(_delete, actor, name, lock=True)
