"""The 2009 original's guest routes, kept for old scripts: ``/guest/<id-or-mac>/<action>``.

The original answered GET (and POST for extend) with a redirect to the
Referer. Here the same paths answer JSON with the API's authentication and
error shape, and call the same services as the API and the pages.

One deliberate difference: a GET that changes something is accepted only with
a bearer token. With the session cookie a GET could be forged by any web page
the user visits (a link or an image), so cookie-authenticated callers must POST
with the XSRF token like every other change.

The phone-home routes ``/guest/<mac>/set`` and ``/guest/<mac>/getuser`` live
in ``fogmachine.web.callbacks``; the action names here never include ``set`` or
``getuser``, so neither module's routes shadow the other's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.errors import PermissionDenied
from fogmachine.services import lifecycle, reservations
from fogmachine.services.actor import Actor
from fogmachine.services.guests import find_guest_id, get_guest, guest_to_dict
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.guests import EXTEND_DAYS, GUEST
from fogmachine.web.api.schema import Query

TAG = "legacy"
# Routes match the raw path: a client may send the MAC's colons percent-encoded.
REF = r"[0-9]{1,18}|[0-9A-Fa-f]{2}(?:(?::|-|%3[Aa])[0-9A-Fa-f]{2}){5}"
ACTIONS = (*lifecycle.ACTIONS, "delete", "extend")
DAYS = Query((EXTEND_DAYS,))
FORM = "application/x-www-form-urlencoded"


def _resolve(session: Session, actor: Actor, ref: str) -> int:
    return find_guest_id(session, actor, ref)


def _get(session: Session, actor: Actor, guest_id: int) -> dict[str, Any]:
    return guest_to_dict(get_guest(session, actor, guest_id))


def _extend(session: Session, actor: Actor, config: Config, guest_id: int, days: int) -> dict[str, Any]:
    return guest_to_dict(reservations.extend(session, config, actor, guest_id, days))


class LegacyGuestHandler(ApiHandler):
    """One action of the original's guest routes, fixed per route by ``action``."""

    def initialize(self, action: str) -> None:
        self.action = action

    def _form_body(self) -> bool:
        return self.request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower() == FORM

    def query_arguments(self) -> dict[str, list[bytes]]:
        # The original's extend form posted ``days=N`` form-encoded: still accepted.
        if self.request.method == "POST" and self._form_body():
            form = {k: v for k, v in self.request.body_arguments.items() if k != "_xsrf"}
            return {**self.request.query_arguments, **form}
        return self.request.query_arguments

    def _parse_body(self, op: Op) -> dict[str, Any]:
        return {} if self._form_body() else super()._parse_body(op)

    async def get(self, ref: str) -> None:
        if self.bearer_token() is None:
            raise PermissionDenied(f"GET /guest/.../{self.action} needs a bearer token; with the session cookie, "
                                   "POST with the X-XSRFToken header instead")
        self.actor.require_write()
        await self.post(ref)

    async def post(self, ref: str) -> None:
        actor = self.actor
        guest_id = await self.ctx.db.run(_resolve, actor, ref)
        if self.action == "delete":
            await lifecycle.delete(self.ctx, actor, guest_id)
            self.no_content()
            return
        if self.action == "extend":
            self.write_json(await self.ctx.db.run(_extend, actor, self.ctx.config, guest_id, self.params["days"]))
            return
        await lifecycle.perform(self.ctx, actor, guest_id, self.action)
        self.write_json(await self.ctx.db.run(_get, actor, guest_id))


def _handler(action: str) -> type[LegacyGuestHandler]:
    """A class per action, so the OpenAPI document describes each path on its own."""
    status, response = (204, None) if action == "delete" else (200, GUEST)
    query = DAYS if action == "extend" else None
    errors = (400, 409) if action == "extend" else (409, 502, 504)
    summary = f"{action.capitalize()} a guest named by id or MAC (the original's route; use /api/v1/guests)"
    ops = {method: Op(summary, TAG, query=query, status=status, response=response, errors=errors, deprecated=True,
                      description="GET needs a bearer token; with the session cookie, POST with X-XSRFToken.")
           for method in ("get", "post")}
    return type(f"Legacy{action.capitalize()}Handler", (LegacyGuestHandler,), {"api": ops})


default_handlers = [(rf"/guest/(?P<ref>{REF})/{action}", _handler(action), {"action": action}) for action in ACTIONS]
