"""Environment templates in the dashboard: the list, the editor (new and edit), export and import.

Who sees and changes which template is the templates service's rule
(``services.environments.templates``); the pages offer the editor, "New" and
"Import" only to whom ``templates.may_write`` says ``save`` would allow, and
``save`` checks again whatever a page offered. The editor takes the name and
the description in fields of their own and the tiers as YAML in a textarea,
in the file format ``files`` reads (``tiers:`` and the list), so a template
exported to a file, or the sample, can be pasted in. Saving checks it all as
the API does, and a refusal comes back under the field it is about: the
textarea for anything in the tiers, with the service's message, which names
the tier and the variable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from fogmachine.errors import FogmachineError, NotFound, PermissionDenied, ValidationError
from fogmachine.services.actor import Actor
from fogmachine.services.checkout.claim import validate_name
from fogmachine.services.environments import files, templates
from fogmachine.web.api.envtemplates import TEMPLATE_NAME, YAML
from fogmachine.web.pages.common import DashboardHandler, login_required

log = logging.getLogger(__name__)
EDITOR_FORM = "template"
IMPORT_FORM = "import"
LIST_LIMIT = 500  # the page lists this many (the API pages through all of them)
ADMINS_ONLY = ("only administrators manage environment templates on this server (the setting user_templates "
               "lets users keep private ones)")
NOT_YOURS = "environment template {} is not yours to change: only administrators change shared ones"
# The sample a new template starts from: the one the README and the CLI's help name.
SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "environments" / "db-web.yaml"


def tiers_part(text: str) -> str:
    """The ``tiers:`` part of a template file (from its top-level ``tiers`` key on): what the editor's
    textarea holds; the name and description have fields of their own."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("tiers:")), None)
    return "".join(lines[start:]) if start is not None else text


def textarea_text(sent: str) -> str:
    """A textarea's text as typed (YAML's indentation and all), its line breaks as ``\\n``: browsers send every
    one as CRLF, and a description refuses the CR as a control character."""
    return sent.replace("\r\n", "\n")


def sample_tiers() -> str:
    """The sample file's tiers, to start a new template from; empty when the sample is not installed."""
    try:
        return tiers_part(SAMPLE.read_text(encoding="utf-8"))
    except OSError as exc:
        log.warning("the sample environment template %s cannot be read: %s", SAMPLE, exc)
        return ""


def editor_field(error: FogmachineError) -> str:
    """The editor's field an error is about: name, description, or the tiers' textarea for anything the
    YAML holds (``tiers[1].variables.db_host``, ``body``, an unknown key); "" for none (the top of the form)."""
    at_fault = error.details.get("field") if error.details else None
    if at_fault in ("name", "description"):
        return str(at_fault)
    return "tiers" if isinstance(error, ValidationError) else ""


def under(error: FogmachineError, field: str) -> FogmachineError:
    """``error`` with ``field`` as the one at fault (its status and message unchanged)."""
    error.details = {**error.details, "field": field} if field else {
        k: v for k, v in error.details.items() if k != "field"}
    return error


def from_editor(name: str, description: str, tiers_yaml: str) -> tuple[str, str, dict[str, Any]]:
    """(name, description, spec data) from the editor's fields. The textarea is a template file: it may carry
    a name (then the form's, when the form has one) and a description (used when the field is empty)."""
    named, described, spec_data = files.load(tiers_yaml)
    if named is not None and name and named != name:
        raise ValidationError(f"the YAML names template {named[:63]!r}, the form {name!r}: they must be the same "
                              "(or leave name out of the YAML)", field="tiers")
    return name or (named or ""), description or described, spec_data


def _list(session: Session, actor: Actor) -> tuple[list[templates.TemplateView], int]:
    return templates.list_templates(session, actor, 0, LIST_LIMIT)


def _visible(session: Session, actor: Actor, name: str) -> bool:
    try:
        templates.get_template(session, actor, name)
    except NotFound:
        return False
    return True


class TemplatesHandler(DashboardHandler):
    """The templates the user may see: shared ones and their own (administrators: every one)."""

    @login_required
    async def get(self) -> None:
        found, total = await self.ctx.db.run(_list, self.actor)
        config = self.ctx.config
        self.render("env_templates.html", env_templates=found, total_templates=total,
                    may_write=templates.may_write(self.actor, config),
                    writable={v.name for v in found if templates.may_write(self.actor, config, v)},
                    max_file_kb=files.MAX_FILE_BYTES // 1024)


class WritingHandler(DashboardHandler):
    async def writable(self, existing: str | None = None) -> templates.TemplateView | None:
        """The template ``existing`` (None: a new one) if the user may write it; 404 when they may not see it,
        403 when they may see but not write it, before anything they sent is looked at."""
        found = None if existing is None else await self.ctx.db.run(templates.get_template, self.actor, existing)
        if not templates.may_write(self.actor, self.ctx.config):
            raise PermissionDenied(ADMINS_ONLY)
        if found is not None and not templates.may_write(self.actor, self.ctx.config, found):
            raise PermissionDenied(NOT_YOURS.format(found.name))
        return found


class TemplateEditorHandler(WritingHandler):
    """New (``/environment-templates/new``) and edit (``/environment-templates/NAME/edit``): one form."""

    async def _page(self, existing: str | None = None) -> None:
        found = await self.writable(existing)
        if found is None:
            values = {"name": "", "description": "", "tiers": sample_tiers()}
        else:
            values = {"name": found.name, "description": found.description,
                      "tiers": tiers_part(files.dump(found.name, found.description, found.spec))}
        values.update(self.failed_values(EDITOR_FORM))
        self.render("env_template_edit.html", existing=existing, form=values, max_bytes=files.MAX_FILE_BYTES,
                    max_description=templates.MAX_DESCRIPTION)

    @login_required
    async def get(self, existing: str | None = None) -> None:
        await self._page(existing)

    @login_required
    async def post(self, existing: str | None = None) -> None:
        await self.writable(existing)
        typed = {"name": existing or self.get_body_argument("name", "").strip(),
                 "description": textarea_text(self.get_body_argument("description", "", strip=False)),
                 "tiers": textarea_text(self.get_body_argument("tiers", "", strip=False))}
        here = f"/environment-templates/{existing}/edit" if existing else "/environment-templates/new"
        try:
            name, description, spec_data = from_editor(typed["name"], typed["description"].strip(), typed["tiers"])
            name = validate_name(name)  # as save would, before the name is looked for
            if existing is None and await self.ctx.db.run(_visible, self.actor, name):
                raise ValidationError(f"a template named {name} exists already: edit it instead", field="name")
            saved = await templates.save(self.ctx, self.actor, name, description, spec_data)
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise
            await self.form_failed(EDITOR_FORM, under(exc, editor_field(exc)), typed, here,
                                   page=lambda: self._page(existing))
            return
        tiers = ", ".join(f"{t.name} x{t.count}" for t in saved.spec.tiers)
        self.done(f"Saved environment template {saved.name}: {tiers}.", "/environment-templates")


class TemplateExportHandler(DashboardHandler):
    """The template as its YAML file, to download: what the API's ``?format=yaml`` answers, named NAME.yaml."""

    @login_required
    async def get(self, name: str) -> None:
        found = await self.ctx.db.run(templates.get_template, self.actor, name)
        self.set_header("Content-Type", f"{YAML}; charset=UTF-8")
        # The name is a DNS label (the route's pattern): nothing in it needs quoting.
        self.set_header("Content-Disposition", f'attachment; filename="{found.name}.yaml"')
        self.finish(files.dump(found.name, found.description, found.spec))


class TemplateImportHandler(WritingHandler):
    """A template file uploaded and saved as it is (created, or replacing the one of its name)."""

    @login_required
    async def post(self) -> None:
        await self.writable()
        uploads = self.request.files.get("file") or []
        typed = {"name": self.get_body_argument("name", "").strip()}
        try:
            if not uploads or not uploads[0].body:
                raise ValidationError("choose a template file (YAML) to import", field="file")
            named, description, spec_data = files.load(uploads[0].body)
            if named is not None and typed["name"] and named != typed["name"]:
                raise ValidationError(f"the file names template {named[:63]!r}, the form {typed['name']!r}: leave "
                                      "the name empty to take the file's", field="name")
            name = named or typed["name"]
            if not name:
                raise ValidationError("the file names no template: give it a name", field="name")
            saved = await templates.save(self.ctx, self.actor, name, description, spec_data)
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise
            field = "name" if editor_field(exc) == "name" else "file"
            await self.form_failed(IMPORT_FORM, under(exc, field), typed, "/environment-templates")
            return
        self.done(f"Imported environment template {saved.name} from {uploads[0].filename[:100]}.",
                  "/environment-templates")


NAMED = rf"/environment-templates/({TEMPLATE_NAME})"
default_handlers = [
    (r"/environment-templates", TemplatesHandler),
    (r"/environment-templates/new", TemplateEditorHandler),
    (r"/environment-templates/import", TemplateImportHandler),
    (f"{NAMED}/edit", TemplateEditorHandler),
    (f"{NAMED}/export", TemplateExportHandler),
]
