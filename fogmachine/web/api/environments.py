"""Environments: list, check one out (202 + Location), show its tiers, extend, start, stop, delete.

The rules are the services': ``environments.claim`` (every tier's capacity in
one transaction, or a 409 naming the tier that did not fit), the engine (the
tiers in order), ``environments.actions`` (lease, power in tier order,
delete). Another user's environment answers 404, as a guest does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import MAX_PURPOSE
from fogmachine.services.environments import actions
from fogmachine.services.environments.claim import EnvironmentRequest, checkout_environment
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.guests import DAYS_LIMIT, EXTEND
from fogmachine.web.api.schema import Field, Obj, Query, page_of, page_params

TAG = "environments"
STEPS = (actions.PROVISIONING, actions.READY, actions.FAILED, actions.RETIRED)
TIER_STATES = ("waiting", actions.PROVISIONING, actions.READY, actions.FAILED, actions.RETIRED)
TIER_GUEST = Obj("EnvironmentGuest", (
    Field("id", "integer", minimum=1),
    Field("name", "string"),
    Field("step", "string", "the guest's provisioning step; waiting: its tier has not started yet"),
    Field("step_reason", "string"),
    Field("state", "string"),
    Field("host", "string", nullable=True),
    Field("ip", "string", "from its phone-home"),
    Field("hostname", "string", "from its phone-home"),
    Field("tier_index", "integer", "its place in the tier, 0 first ({{ db[0].ip }})", nullable=True),
), closed=False)
TIER = Obj("EnvironmentTier", (
    Field("index", "integer", minimum=0),
    Field("name", "string"),
    Field("target", "string", "the catalog entry its guests are made from"),
    Field("count", "integer", minimum=1),
    Field("anti_affinity", "boolean", "its guests are on different hosts"),
    Field("variables", "array", "the names of its variables (their values: GET /guest/MAC/env, from the guest)",
          items=Field("name", "string")),
    Field("state", "string", enum=TIER_STATES),
    Field("guests", "array", items=TIER_GUEST),
), closed=False)
ENVIRONMENT = Obj("Environment", (
    Field("id", "integer", minimum=1),
    Field("name", "string"),
    Field("owner", "string", nullable=True),
    Field("template", "string", "the template it was checked out from (its tiers are copied: a later edit of "
          "the template changes no environment)"),
    Field("purpose", "string"),
    Field("step", "string", "provisioning (tier says which tier is on its way), ready, failed (step_reason "
          "names the guest and its step) or retired", enum=STEPS),
    Field("step_reason", "string"),
    Field("tier", "integer", "the tier being provisioned or last provisioned; -1 before the first starts"),
    Field("keep_failed", "boolean", "a failed environment keeps its guests for inspection"),
    Field("tiers", "array", items=TIER),
    Field("created_at", "datetime"),
    Field("expires_at", "datetime", nullable=True),
    Field("retired_at", "datetime", nullable=True),
    Field("updated_at", "datetime"),
), closed=False)
ENVIRONMENT_LIST = page_of("EnvironmentList", "environments", ENVIRONMENT)
CHECKOUT = Obj("EnvironmentCheckout", (
    Field("template", "string", "an environment template (GET /api/v1/environment-templates)", min_length=1,
          max_length=63),
    Field("name", "string", "a DNS label; the tiers' name patterns make the guests' names from it",
          min_length=1, max_length=63, example="lab1"),
    Field("days", "integer", "how long to keep it; at most the server's max_days", minimum=1, maximum=DAYS_LIMIT),
    Field("purpose", "string", "what it is for", max_length=MAX_PURPOSE),
    Field("keep_failed", "boolean", "if a tier fails, keep what was made for inspection instead of tearing "
          "it all down", required=False, default=False),
))


def _list(session: Session, actor: Actor, include_retired: bool) -> list[dict[str, Any]]:
    return [actions.environment_to_dict(session, env)
            for env in actions.list_environments(session, actor, include_retired=include_retired)]


def _extend(session: Session, config: Config, actor: Actor, env_id: int, days: int) -> dict[str, Any]:
    return actions.extend(session, config, actor, env_id, days)


class EnvironmentsHandler(ApiHandler):
    api = {
        "get": Op("List environments", TAG, "Your environments (administrators: everyone's), oldest first.",
                  query=Query((Field("include_retired", "boolean", required=False, default=False),
                               *page_params())), response=ENVIRONMENT_LIST),
        "post": Op("Check out an environment", TAG, "Claims every tier's capacity in one transaction (or "
                   "nothing: 409 names the tier that did not fit and what the best host had free), then answers "
                   "202 at once. The first tier provisions; each next tier starts when every guest of the tiers "
                   "before it is ready, its variables resolved from what they reported. Follow the Location "
                   "until step is ready or failed.", body=CHECKOUT, status=202, response=ENVIRONMENT,
                   location=True, errors=(404, 409, 502, 504)),
    }

    async def get(self) -> None:
        found = await self.ctx.db.run(_list, self.actor, self.params["include_retired"])
        offset, limit = self.params["offset"], self.params["limit"]
        self.write_json({"environments": found[offset:offset + limit], "total": len(found), "offset": offset,
                         "limit": limit})

    async def post(self) -> None:
        req = EnvironmentRequest(template=self.data["template"], name=self.data["name"], days=self.data["days"],
                                 purpose=self.data["purpose"], keep_failed=self.data["keep_failed"])
        env = await checkout_environment(self.ctx, self.actor, req)
        self.created(f"/api/v1/environments/{env.id}", await self.ctx.db.run(actions.show, self.actor, env.id), 202)


class EnvironmentHandler(ApiHandler):
    api = {
        "get": Op("Show an environment", TAG, "Its step and its tiers in order, each with its guests.",
                  response=ENVIRONMENT),
        "delete": Op("Delete an environment", TAG, "Retires the environment at once (no tier starts after this) "
                     "and deletes its guests, the last tier first, those still being provisioned included. Its "
                     "record stays as history. If a guest's parts could not all be removed the answer is that "
                     "error (502 ...) with details.deleted true; reconciliation removes what is left.",
                     status=204, errors=(409, 502, 504)),
    }

    async def get(self, env_id: str) -> None:
        self.write_json(await self.ctx.db.run(actions.show, self.actor, self.path_id(env_id, "environment")))

    async def delete(self, env_id: str) -> None:
        await actions.delete(self.ctx, self.actor, self.path_id(env_id, "environment"))
        self.no_content()


class EnvironmentExtendHandler(ApiHandler):
    api = {"post": Op("Extend an environment's lease", TAG, "Adds days to its expiry, up to the longest lease the "
                      "server allows, and gives every live guest of it that expiry.", body=EXTEND,
                      response=ENVIRONMENT, errors=(409,))}

    async def post(self, env_id: str) -> None:
        self.write_json(await self.ctx.db.run(_extend, self.ctx.config, self.actor,
                                              self.path_id(env_id, "environment"), self.data["days"], lock=True))


class EnvironmentPowerHandler(ApiHandler):
    def initialize(self, action: str) -> None:
        self.action = action

    async def post(self, env_id: str) -> None:
        self.write_json(await actions.power(self.ctx, self.actor, self.path_id(env_id, "environment"), self.action))


def _power_handler(action: str) -> type[EnvironmentPowerHandler]:
    summary, order = {"start": ("Start an environment", "Every ready guest, the first tier first"),
                      "stop": ("Shut an environment down", "Every ready guest, gracefully, the last tier first"),
                      }[action]
    op = Op(summary, TAG, f"{order}; a guest already so is passed over.", response=ENVIRONMENT,
            errors=(409, 502, 504))
    return type(f"Environment{action.capitalize()}Handler", (EnvironmentPowerHandler,), {"api": {"post": op}})


ENV_PATH = r"/api/v1/environments/(?P<env_id>[0-9]+)"
default_handlers = [
    (r"/api/v1/environments", EnvironmentsHandler),
    (ENV_PATH, EnvironmentHandler),
    *[(f"{ENV_PATH}/{action}", _power_handler(action), {"action": action}) for action in actions.POWER_ACTIONS],
    (f"{ENV_PATH}/extend", EnvironmentExtendHandler),
]
