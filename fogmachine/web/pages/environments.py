"""Environments in the dashboard: the list, the form that checks one out, its page, and its actions.

The page ``/environments/ID`` shows the environment's sentence and its tiers
as a ladder, each tier's guests drawn with the guest lists' own row
(``guest_row.html``), so ``static/live.js`` keeps them up to date like any
row. The live feed follows guests, not environments: the page's script
(``static/environment.js``) hears of a change to one of its guests and asks
``/environments/ID/summary`` for the sentence and the tiers' states again
(``services.envview.summary``); the API's ``GET /api/v1/environments/ID``
takes the session too, but has no sentence to show.

Every form follows post, redirect, get: a refusal of the checkout comes back
under its field (``form_failed``), a tier that finds no room at the top of
the form with the tier named; an action's refusal is a flash on the page it
was pressed on. Another user's environment is a 404, as a guest is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.errors import FogmachineError, NotFound, PartlyDone, ValidationError
from fogmachine.services import envview
from fogmachine.services.actor import Actor
from fogmachine.services.environments import actions, templates
from fogmachine.services.environments.claim import EnvironmentRequest, checkout_environment
from fogmachine.web.pages import view
from fogmachine.web.pages.common import DashboardHandler, login_required

DEFAULT_DAYS = 7
NEW_FORM = "new-environment"
NEW_FIELDS = ("template", "name", "days", "purpose", "keep_failed")
LARGEST_ID = 2**31 - 1  # every database's integer ids; a larger one is simply not there
# The form lists this many templates at most (the API pages through all of them).
MAX_TEMPLATES = 500
POWER_DONE = {"start": "started, the first tier first", "stop": "asked to shut down, the last tier first"}


def extend_form(env_id: int) -> str:
    """The name an environment's extend form goes by when it failed (``forms.FailedForm``)."""
    return f"env-extend-{env_id}"


def _number(env_id: str) -> int:
    number = int(env_id)
    if not 1 <= number <= LARGEST_ID:
        raise NotFound(f"no environment with id {env_id}")
    return number


def _days(text: str) -> int | str:
    """A whole number typed in ASCII digits as the number; anything else as typed, for the service to refuse."""
    return int(text) if text.isascii() and text.isdigit() else text


def _usable_templates(session: Session, actor: Actor) -> tuple[list[templates.TemplateView], int]:
    return templates.list_templates(session, actor, 0, MAX_TEMPLATES)


def _extend(session: Session, config: Config, actor: Actor, env_id: int, days: int | str) -> dict[str, Any]:
    return actions.extend(session, config, actor, env_id, days)


class EnvironmentsHandler(DashboardHandler):
    """The list: the user's environments (administrators: everyone's, with the owner)."""

    @login_required
    async def get(self) -> None:
        rows = await self.ctx.db.run(envview.environment_rows, self.actor)
        self.render("environments.html", environments=rows)


class NewEnvironmentHandler(DashboardHandler):
    """The checkout form: a template the user may use, a name, days, purpose, keep_failed."""

    async def _page(self) -> None:
        chosen = self.get_query_argument("template", "")
        form = {"template": chosen, "name": "", "purpose": "", "keep_failed": "",
                "days": str(min(DEFAULT_DAYS, self.ctx.config.max_days)), **self.failed_values(NEW_FORM)}
        found, total = await self.ctx.db.run(_usable_templates, self.actor)
        self.render("environment_new.html", form=form, env_templates=found, total_templates=total,
                    may_write=templates.may_write(self.actor, self.ctx.config))

    @login_required
    async def get(self) -> None:
        await self._page()

    @login_required
    async def post(self) -> None:
        form = {key: self.get_body_argument(key, "").strip() for key in NEW_FIELDS}
        request = EnvironmentRequest(template=form["template"], name=form["name"], days=_days(form["days"]),
                                     purpose=form["purpose"], keep_failed=form["keep_failed"] == "yes")
        try:
            env = await checkout_environment(self.ctx, self.actor, request)
        except NotFound as exc:  # the template chosen is gone (or never was this user's): said under it
            await self.form_failed(NEW_FORM, ValidationError(exc.message, field="template"), form,
                                   "/environments/new", page=self._page)
            return
        except FogmachineError as exc:
            if exc.status in (401, 403):
                raise
            # A field's mistake goes under it; a tier with no room, or the catalog down, at the top of the form.
            await self.form_failed(NEW_FORM, exc, form, "/environments/new", page=self._page)
            return
        self.done(f"{env.name} is on its way: its tiers start in order, each once the one before is ready.",
                  f"/environments/{env.id}")


class EnvironmentPageHandler(DashboardHandler):
    @login_required
    async def get(self, env_id: str) -> None:
        number = _number(env_id)
        data = await self.ctx.db.run(envview.environment_page, self.actor, number)
        self.render("environment.html", back=f"/environments/{number}", env_extend=extend_form(number), **data)


class EnvironmentSummaryHandler(DashboardHandler):
    """The open page's question "what is the environment now?": JSON the script puts in place as text."""

    @login_required
    async def get(self, env_id: str) -> None:
        found = await self.ctx.db.run(envview.summary, self.actor, _number(env_id))
        found["expires_text"] = view.when(found["expires_at"]) if found["expires_at"] else ""
        self.write(found)  # a dict: JSON, with its content type


class EnvironmentPowerHandler(DashboardHandler):
    """Start (the first tier first) or stop (the last tier first) every ready guest of it."""

    @login_required
    async def post(self, env_id: str, action: str) -> None:
        number = _number(env_id)

        def said(env: dict[str, Any]) -> str:
            return f"{env['name']}: {POWER_DONE[action]}."

        await self.attempt(actions.power(self.ctx, self.actor, number, action), said,
                           self.back(f"/environments/{number}"))


class EnvironmentExtendHandler(DashboardHandler):
    """+1 day, +7 days or the number typed, for every guest of it; a refused number comes back under its field."""

    @login_required
    async def post(self, env_id: str) -> None:
        number = _number(env_id)
        days = self.get_body_argument("days", "").strip()
        back = self.back(f"/environments/{number}")
        try:
            env = await self.ctx.db.run(_extend, self.ctx.config, self.actor, number, _days(days), lock=True)
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise
            if exc.details.get("field") == "days":
                await self.form_failed(extend_form(number), exc, {"days": days}, back)
            else:
                self.failed(exc, back)
            return
        self.done(f"{env['name']}: extended by {days} day(s), now expires {view.when(env['expires_at'])}.", back)


class EnvironmentDeleteHandler(DashboardHandler):
    """Deleting asks first: the button's script in the page, else (or without ``confirm=yes``) a page."""

    async def _confirm(self, number: int) -> None:
        shown = await self.ctx.db.run(actions.show, self.actor, number)  # another's: 404, no question
        self.render("environment_confirm.html", env=shown)

    @login_required
    async def get(self, env_id: str) -> None:
        await self._confirm(_number(env_id))

    @login_required
    async def post(self, env_id: str) -> None:
        number = _number(env_id)
        if self.get_body_argument("confirm", "") != "yes":
            await self._confirm(number)
            return
        back = f"/environments/{number}"
        shown = await self.ctx.db.run(actions.show, self.actor, number)
        try:
            await actions.delete(self.ctx, self.actor, number)
        except PartlyDone as exc:  # deleted; a host or Cobbler keeps a part that reconciliation removes later
            self.failed(exc, "/environments")
            return
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise
            self.failed(exc, back)
            return
        count = sum(1 for tier in shown["tiers"] for guest in tier["guests"] if guest["step"] != "retired")
        self.done(f"{shown['name']}: deleted, with its {count} guest{'' if count == 1 else 's'}.", "/environments")


ENV = r"/environments/(\d{1,18})"
default_handlers = [
    (r"/environments", EnvironmentsHandler),
    (r"/environments/new", NewEnvironmentHandler),
    (ENV, EnvironmentPageHandler),
    (f"{ENV}/summary", EnvironmentSummaryHandler),
    (f"{ENV}/(" + "|".join(actions.POWER_ACTIONS) + ")", EnvironmentPowerHandler),
    (f"{ENV}/extend", EnvironmentExtendHandler),
    (f"{ENV}/delete", EnvironmentDeleteHandler),
]
