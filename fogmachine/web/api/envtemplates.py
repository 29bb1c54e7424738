"""Environment templates: list, show (JSON, or the YAML file), create or replace whole (PUT), delete.

The rules (who sees and changes which, the checks of the tiers, their
variables and catalog entries) live in ``services.environments.templates``;
this module parses, negotiates JSON or YAML, and answers. A PUT takes the
same object as JSON or as the YAML file (``Content-Type: application/yaml``),
whose name, when it has one, must be the URL's; a GET answers the file with
``Accept: application/yaml`` or ``?format=yaml``, so an export can be put back
as it is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.errors import ValidationError
from fogmachine.services.actor import Actor
from fogmachine.services.environments import files, templates
from fogmachine.services.environments.spec import DEFAULT_NAME_PATTERN, MAX_COUNT, MAX_PATTERN, MAX_TIERS
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.schema import Field, Obj, Query, page_of, page_params

TAG = "environment templates"
TEMPLATE_NAME = r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
YAML = "application/yaml"
# What an Accept header may call YAML; the answer always says application/yaml.
YAML_TYPES = frozenset({YAML, "application/x-yaml", "text/yaml", "text/x-yaml"})

_TIER_FIELDS = (
    Field("name", "string", "how variables name the tier ({{ db.ip }}): 1 to 31 lower-case letters, digits or "
          "'_', starting with a letter", min_length=1, max_length=31, example="db"),
    Field("target", "string", "a catalog entry (GET /api/v1/catalog)", min_length=1, max_length=255,
          example="small"),
    Field("count", "integer", "how many guests", required=False, minimum=1, maximum=MAX_COUNT, default=1),
    Field("name_pattern", "string", "the guests' names: lower-case letters, digits, '-' and {env} (the "
          "environment's name), {tier}, {n} (1, 2, ...; needed when count > 1)", required=False,
          max_length=MAX_PATTERN, default=DEFAULT_NAME_PATTERN),
    Field("anti_affinity", "boolean", "true: its guests go to different hosts", required=False, default=False),
    Field("variables", "object", "NAME: text with Jinja2 expressions over the tiers before this one, env and "
          "owner, e.g. {\"db_host\": \"{{ db.ip }}\"}; the guests' installers receive the values",
          required=False, nullable=True),
)
TIER = Obj("EnvTier", _TIER_FIELDS, closed=False)
TIER_IN = Obj("EnvTierInput", _TIER_FIELDS, description="A tier: its guests start once every guest of the "
              "tiers before it is ready.")
_FILE_FIELDS = (
    Field("name", "string", "the template's name (a DNS label)"),
    Field("description", "string"),
    Field("tiers", "array", "in order", items=TIER),
)
TEMPLATE = Obj("EnvTemplate", (
    Field("id", "integer", minimum=1),
    *_FILE_FIELDS,
    Field("owner", "string", "the owner's username; null for a shared template", nullable=True),
    Field("shared", "boolean", "true: managed by administrators, seen by everyone"),
    Field("guest_count", "integer", "guests an environment of it has", minimum=1),
    Field("created_at", "datetime"),
    Field("updated_at", "datetime"),
), closed=False)
TEMPLATE_FILE = Obj("EnvTemplateFile", _FILE_FIELDS, description="The template as a file (YAML): PUT takes "
                    "it back as it is.", closed=False)
TEMPLATE_LIST = page_of("EnvTemplateList", "templates", TEMPLATE)
TEMPLATE_PUT = Obj("EnvTemplatePut", (
    Field("name", "string", "optional (a file carries it): when given, the URL's name", required=False,
          max_length=63),
    Field("description", "string", "what it is for", required=False, max_length=templates.MAX_DESCRIPTION,
          default=""),
    Field("tiers", "array", f"1 to {MAX_TIERS} tiers, in order", items=TIER_IN, max_length=MAX_TIERS),
), description="The whole template, as JSON or as its YAML file (Content-Type: application/yaml).")
FORMAT = Field("format", "string", "yaml: the template's file (as Accept: application/yaml); json: the object",
               required=False, enum=("json", "yaml"))


def _list(session: Session, actor: Actor, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    views, total = templates.list_templates(session, actor, offset, limit)
    return [templates.template_to_dict(v) for v in views], total


def _get(session: Session, actor: Actor, name: str) -> templates.TemplateView:
    return templates.get_template(session, actor, name)


class EnvTemplatesHandler(ApiHandler):
    api = {"get": Op("List environment templates", TAG, "The shared templates and your own, by name "
                     "(administrators: every one).", query=Query(page_params()), response=TEMPLATE_LIST)}

    async def get(self) -> None:
        offset, limit = self.params["offset"], self.params["limit"]
        rows, total = await self.ctx.db.run(_list, self.actor, offset, limit)
        self.write_json({"templates": rows, "total": total, "offset": offset, "limit": limit})


class EnvTemplateHandler(ApiHandler):
    api = {
        "get": Op("Show an environment template", TAG, "As JSON, or as its YAML file with Accept: "
                  "application/yaml or ?format=yaml (which PUT takes back as it is).", query=Query((FORMAT,)),
                  response=TEMPLATE, also_answers=((YAML, TEMPLATE_FILE),)),
        "put": Op("Create or replace an environment template", TAG,
                  "The whole template, as JSON or as its YAML file (Content-Type: application/yaml); the answer "
                  "is 200 whether it was made or replaced. Administrators save shared templates; users, private "
                  "ones of their own when the server's user_templates setting allows. Each variable is checked "
                  "here (a syntax error, a tier that is not before its own, an unknown name or attribute, a "
                  "reach past the sandbox): a 400 whose details.field names it, e.g. "
                  "tiers[1].variables.db_host; an unknown catalog entry is a 400 on tiers[i].target.",
                  body=TEMPLATE_PUT, response=TEMPLATE, errors=(409, 502, 504), also_accepts=(YAML,)),
        "delete": Op("Delete an environment template", TAG, "Environments made from it live on, with their "
                     "copy of it.", status=204),
    }

    def decode_body(self, media_type: str, raw: bytes) -> Any:
        name, description, spec_data = files.load(raw)
        body = {"name": name, "description": description, **spec_data}
        return {key: value for key, value in body.items() if value is not None}

    def _wants_yaml(self) -> bool:
        if self.params["format"] is not None:
            return bool(self.params["format"] == "yaml")
        accepted = [part.split(";", 1)[0].strip().lower() for part in self.request.headers.get("Accept", "").split(",")]
        first = next((media for media in accepted if media in YAML_TYPES or media == "application/json"), "")
        return first in YAML_TYPES

    async def get(self, template_name: str) -> None:
        view = await self.ctx.db.run(_get, self.actor, template_name)
        self.set_header("Vary", "Accept")
        if self._wants_yaml():
            self.set_header("Content-Type", f"{YAML}; charset=UTF-8")
            self.finish(files.dump(view.name, view.description, view.spec))
            return
        self.write_json(templates.template_to_dict(view))

    async def put(self, template_name: str) -> None:
        named = self.data["name"]
        if named is not None and named != template_name:
            raise ValidationError(f"the body names template {named[:63]!r}, the URL {template_name!r}: they must be "
                                  "the same (or leave name out)", field="name")
        view = await templates.save(self.ctx, self.actor, template_name, self.data["description"],
                                    {"tiers": self.data["tiers"]})
        self.write_json(templates.template_to_dict(view))

    async def delete(self, template_name: str) -> None:
        await templates.delete(self.ctx, self.actor, template_name)
        self.no_content()


default_handlers = [
    (r"/api/v1/environment-templates", EnvTemplatesHandler),
    (rf"/api/v1/environment-templates/(?P<template_name>{TEMPLATE_NAME})", EnvTemplateHandler),
]
