"""Guests: list, show, check out (202 + Location), lifecycle actions, extend, delete.

The rules live in the services the dashboard uses too: ``services.guests``
(who sees what), ``services.checkout``, ``services.lifecycle`` and
``services.reservations``. Another user's guest answers 404, exactly like a
guest that does not exist, so ids cannot be probed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.db.models import GuestState, Step
from fogmachine.services import checkout, lifecycle, reservations
from fogmachine.services.actor import Actor
from fogmachine.services.guests import GuestFilter, get_guest, guest_to_dict
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.schema import Field, Obj, Query, page_of, page_params

TAG = "guests"
GUEST = Obj("Guest", (
    Field("id", "integer", minimum=1),
    Field("name", "string"),
    Field("owner", "string", "username; null for a domain Fogmachine did not create", nullable=True),
    Field("host", "string", "null until placed", nullable=True),
    Field("managed", "boolean", "false: a domain found on a host, shown to administrators, never touched"),
    Field("target", "string", "the catalog entry it was made from"),
    Field("target_kind", "string"),
    Field("ram_mb", "integer", minimum=0),
    Field("vcpus", "integer", minimum=0),
    Field("disk_gb", "integer", minimum=0),
    Field("purpose", "string"),
    Field("state", "string", "the domain's state as libvirt reports it", enum=tuple(s.value for s in GuestState)),
    Field("step", "string", "provisioning: placing, registering, defining, booting, installing, then ready "
          "or failed (reason in step_reason); retired once gone", enum=tuple(s.value for s in Step)),
    Field("step_reason", "string"),
    Field("mac", "string", nullable=True),
    Field("ip", "string", "from the guest's phone-home"),
    Field("hostname", "string", "from the guest's phone-home"),
    Field("vnc_port", "integer", nullable=True),
    Field("uuid", "string", nullable=True),
    Field("created_at", "datetime"),
    Field("expires_at", "datetime", nullable=True),
    Field("retired_at", "datetime", nullable=True),
    Field("updated_at", "datetime"),
), closed=False)
GUEST_LIST = page_of("GuestList", "guests", GUEST)
LIST_QUERY = Query((
    Field("owner", "string", "username", required=False, max_length=64),
    Field("state", "string", required=False, enum=tuple(s.value for s in GuestState)),
    Field("host", "string", "host name", required=False, max_length=64),
    Field("step", "string", required=False, enum=tuple(s.value for s in Step)),
    Field("include_retired", "boolean", required=False, default=False),
    Field("include_unmanaged", "boolean", "domains Fogmachine did not create (administrators)", required=False,
          default=False),
    *page_params(),
))
# Ten years: above any server's max_days, which the services check; beyond it a client surely erred.
DAYS_LIMIT = 3650
EXTEND_DAYS = Field("days", "integer", "days added to the current expiry", minimum=1, maximum=DAYS_LIMIT)
CHECKOUT = Obj("Checkout", (
    Field("name", "string", "a DNS label: lower-case letters, digits and '-'", min_length=1, max_length=63,
          example="web1"),
    Field("target", "string", "a catalog entry (GET /api/v1/catalog)", min_length=1, max_length=255),
    Field("days", "integer", "how long to keep it; at most the server's max_days", minimum=1,
          maximum=DAYS_LIMIT),
    Field("purpose", "string", "what it is for", max_length=checkout.MAX_PURPOSE),
))
EXTEND = Obj("Extend", (EXTEND_DAYS,))


def _get(session: Session, actor: Actor, guest_id: int) -> dict[str, Any]:
    return guest_to_dict(get_guest(session, actor, guest_id))


def _extend(session: Session, actor: Actor, config: Config, guest_id: int, days: int) -> dict[str, Any]:
    return guest_to_dict(reservations.extend(session, config, actor, guest_id, days))


class GuestsHandler(ApiHandler):
    api = {
        "get": Op("List guests", TAG, "Your guests (administrators: everyone's), oldest first. Retired guests "
                  "and unmanaged domains only when asked.", query=LIST_QUERY, response=GUEST_LIST),
        "post": Op("Check out a guest", TAG, "Places the guest and claims its capacity, then answers 202 at once; "
                   "provisioning goes on in the background. Follow the Location until step is ready or failed.",
                   body=CHECKOUT, status=202, response=GUEST, location=True, errors=(409, 502, 504)),
    }

    async def get(self) -> None:
        answer = await self.guest_lists.get(self.actor, GuestFilter(**self.params))
        self.etag = answer.etag
        self.finish(answer.body)

    def compute_etag(self) -> str | None:
        # The cached answer's own tag: no hashing of the whole body per request.
        return getattr(self, "etag", None) or super().compute_etag()

    async def post(self) -> None:
        req = checkout.CheckoutRequest(self.data["name"], self.data["target"], self.data["days"],
                                       self.data["purpose"])
        guest = await checkout.checkout(self.ctx, self.actor, req)
        self.created(f"/api/v1/guests/{guest.id}", await self.ctx.db.run(_get, self.actor, guest.id), 202)


class GuestHandler(ApiHandler):
    api = {
        "get": Op("Show a guest", TAG, response=GUEST),
        "delete": Op("Delete a guest", TAG, "Powers it off, undefines the domain, removes the volumes and the "
                     "Cobbler system Fogmachine made, then retires the guest: its record stays as history (step "
                     "retired, step_reason \"deleted by NAME\"; a second DELETE answers 409). While the host of a "
                     "guest that may run there is down the answer is 502 (host_unreachable) and nothing is "
                     "deleted, unless an administrator sends force=true: then what can be removed is, the guest "
                     "is retired at once with what is left named on it, and reconciliation removes the rest when "
                     "the host answers again. A failed checkout needs no host. Once started, a delete always "
                     "retires the guest; if a part could not be removed (Cobbler down, say) the answer is that "
                     "part's error (502 cobbler_unreachable, ...) with details.deleted true and details.removed "
                     "and details.left naming the parts; reconciliation removes what is left.",
                     status=204,
                     query=Query((Field("force", "boolean", "administrators: retire the guest even if its "
                                        "host cannot be reached, or delete it while it is still being "
                                        "provisioned (stuck)", required=False, default=False),)),
                     errors=(409, 502, 504)),
    }

    async def get(self, guest_id: str) -> None:
        self.write_json(await self.ctx.db.run(_get, self.actor, self.path_id(guest_id, "guest")))

    async def delete(self, guest_id: str) -> None:
        await lifecycle.delete(self.ctx, self.actor, self.path_id(guest_id, "guest"), force=self.params["force"])
        self.no_content()


ACTION_SUMMARIES = {
    "start": "Start (power on) a guest",
    "stop": "Shut a guest down gracefully",
    "restart": "Restart a guest",
    "pause": "Pause a running guest",
    "unpause": "Resume a paused guest",
    "destroy": "Power a guest off at once (its disk is kept)",
    "refresh": "Read a guest's state from its host now",
}


class GuestActionHandler(ApiHandler):
    """One lifecycle action, fixed per route by ``action``."""

    def initialize(self, action: str) -> None:
        self.action = action

    async def post(self, guest_id: str) -> None:
        gid = self.path_id(guest_id, "guest")
        await lifecycle.perform(self.ctx, self.actor, gid, self.action)
        self.write_json(await self.ctx.db.run(_get, self.actor, gid))


def _action_handler(action: str) -> type[GuestActionHandler]:
    """A handler class per action, so the document describes each one on its own path."""
    op = Op(ACTION_SUMMARIES.get(action, action.capitalize()), TAG, response=GUEST, errors=(409, 502, 504))
    return type(f"Guest{action.capitalize()}Handler", (GuestActionHandler,), {"api": {"post": op}})


class GuestExtendHandler(ApiHandler):
    api = {"post": Op("Extend a guest's reservation", TAG, "Adds days to the current expiry, up to the longest "
                      "lease the server allows.", body=EXTEND, response=GUEST, errors=(409,))}

    async def post(self, guest_id: str) -> None:
        self.write_json(await self.ctx.db.run(_extend, self.actor, self.ctx.config,
                                              self.path_id(guest_id, "guest"), self.data["days"]))


GUEST_PATH = r"/api/v1/guests/(?P<guest_id>[0-9]+)"
default_handlers = [
    (r"/api/v1/guests", GuestsHandler),
    (GUEST_PATH, GuestHandler),
    *[(f"{GUEST_PATH}/{action}", _action_handler(action), {"action": action}) for action in lifecycle.ACTIONS],
    (f"{GUEST_PATH}/extend", GuestExtendHandler),
]
