"""The environment-template pages through real HTTP, on SQLite, MariaDB and PostgreSQL: the list, the editor
(new, edit, a refusal under the field it is about), export as a file, and import; who is offered what.
"""

from __future__ import annotations

import re
import uuid
from html import unescape

import yaml
from sqlalchemy import func, select

from fogmachine.db.models import EnvTemplate
from fogmachine.services.environments import files, templates
from tests.web.pages.conftest import PageClient, Reply, Site, open_site

TIERS = """\
tiers:
  - name: db
    target: tiny
  - name: web
    target: tiny
    count: 2
    anti_affinity: true
    variables:
      db_host: "{{ db.ip }}"
"""
# The tier web names its own guests: refused on save, naming the tier and the variable.
CYCLE = TIERS.replace("{{ db.ip }}", "{{ web.ip }}")


async def template_count(site: Site) -> int:
    return await site.ctx.db.run(lambda s: s.scalar(select(func.count()).select_from(EnvTemplate)))


async def upload(client: PageClient, path: str, filename: str, content: bytes, **fields: str) -> Reply:
    """POST a multipart form with one file, as a browser's file input sends it (with the page's XSRF token)."""
    if "_xsrf" not in client.cookies:
        await client.get("/login")
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in {"_xsrf": client.cookies["_xsrf"], **fields}.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: application/yaml\r\n\r\n".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    r = await client.srv.fetch(path, method="POST", body=body, headers={
        **client._cookie_header(), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    client._remember(r.headers)
    return Reply(r.code, r.headers, r.body.decode())


def textarea(reply: Reply) -> str:
    return reply.field_value("tiers")


async def test_an_administrator_writes_edits_exports_and_imports_templates(site):
    root = await site.as_user("root")
    listed = await root.get("/environment-templates")
    assert listed.code == 200 and "No environment templates yet." in listed.text
    assert 'href="/environment-templates/new"' in listed.text
    assert 'action="/environment-templates/import"' in listed.text

    # New: the tiers' textarea starts from the sample file (its tiers part, in the file format).
    new = await root.get("/environment-templates/new")
    assert new.code == 200
    sample = textarea(new)
    assert sample.startswith("tiers:") and "db_host" in sample and "name: db-web" not in sample
    assert yaml.safe_load(sample)["tiers"][1]["anti_affinity"] is True
    r = await root.post("/environment-templates/new", {"name": "db-web", "description": "two tiers", "tiers": TIERS})
    assert r.code == 303 and r.location == "/environment-templates", r.text[:800]
    page = await root.follow(r)
    assert ("ok", "Saved environment template db-web: db x1, web x2.") in page.flashes
    text = unescape(page.text)
    assert "<strong>web</strong>: 2 \u00d7 tiny, on different hosts; variables db_host" in text and "shared" in text
    assert 'href="/environment-templates/db-web/edit"' in text and 'href="/environment-templates/db-web/export"' in text
    assert 'href="/environments/new?template=db-web"' in text

    # A second "new" of the same name is refused (edit it instead): nothing is replaced by surprise.
    page = await root.refused("/environment-templates/new", {"name": "db-web", "description": "", "tiers": TIERS},
                              "/environment-templates/new")
    assert page.field_error("template", "name") == "a template named db-web exists already: edit it instead"
    page = await root.refused("/environment-templates/new", {"name": "DB Web", "description": "", "tiers": TIERS},
                              "/environment-templates/new")
    assert (page.field_error("template", "name") or "").startswith("name must be a DNS label")
    assert page.field_value("name") == "DB Web" and textarea(page) == TIERS

    # Edit: the textarea holds the tiers as saved; a bad variable comes back under it, naming tier and variable,
    # with what was typed; nothing changes.
    edit = await root.get("/environment-templates/db-web/edit")
    assert edit.code == 200 and yaml.safe_load(textarea(edit))["tiers"][1]["variables"] == {"db_host": "{{ db.ip }}"}
    assert edit.field_value("description") == "two tiers" and 'name="name"' not in edit.text
    page = await root.refused("/environment-templates/db-web/edit", {"description": "changed", "tiers": CYCLE},
                              "/environment-templates/db-web/edit")
    message = page.field_error("template", "tiers") or ""
    assert message.startswith("tiers[1] (web), variable db_host: ") and "web" in message, message
    assert page.marked("template", "tiers") and textarea(page) == CYCLE and page.field_value("description") == "changed"
    for bad, said in ((TIERS.replace("target: tiny\n  - name: web", "target: nosuch\n  - name: web"),
                       "tiers[0] (db): "),
                      ("tiers: [unclosed", "the template file is not valid YAML: line 1"),
                      ("tiers:\n  - name: db\n    target: tiny\n    colour: blue\n",
                       "tiers[0] has unknown keys: colour"),
                      ("name: other\n" + TIERS, "the YAML names template 'other', the form 'db-web'")):
        page = await root.refused("/environment-templates/db-web/edit", {"description": "", "tiers": bad},
                                  "/environment-templates/db-web/edit")
        assert said in (page.field_error("template", "tiers") or ""), (bad, page.text[:3000])
    view = await site.ctx.db.run(templates.get_template, site.actor("root"), "db-web")
    assert view.description == "two tiers" and view.spec.tiers[1].variables == {"db_host": "{{ db.ip }}"}
    # as a browser sends a textarea: every line break a CRLF
    r = await root.post("/environment-templates/db-web/edit", {"description": "a db,\r\nthen web",
                                                                "tiers": TIERS.replace("\n", "\r\n")})
    assert r.code == 303
    assert ("ok", "Saved environment template db-web: db x1, web x2.") in (await root.follow(r)).flashes

    # Export: the file, to download, which reads back to the same template.
    r = await root.get("/environment-templates/db-web/export")
    assert r.code == 200 and r.headers["Content-Type"].startswith("application/yaml")
    assert r.headers["Content-Disposition"] == 'attachment; filename="db-web.yaml"'
    name, description, spec = files.load(r.text)
    assert (name, description) == ("db-web", "a db,\nthen web") and spec["tiers"][1]["count"] == 2

    # Import: a file saved as it is (its own name, or the one given when it has none).
    r = await upload(root, "/environment-templates/import", "web-only.yaml",
                     b"description: one tier\ntiers:\n  - name: web\n    target: tiny\n", name="web-only")
    assert r.code == 303 and r.location == "/environment-templates", r.text[:800]
    assert ("ok", "Imported environment template web-only from web-only.yaml.") in (await root.follow(r)).flashes
    exported = (await root.get("/environment-templates/db-web/export")).text.replace("name: db-web", "name: db-copy")
    r = await upload(root, "/environment-templates/import", "copy.yaml", exported.encode())
    assert r.code == 303 and await template_count(site) == 3
    # A refused import comes back on the list, under the file (the message names tier and variable) or the name.
    for content, fields, field, said in (
            (CYCLE.encode(), {"name": "cyclic"}, "file", "tiers[1] (web), variable db_host: "),
            (TIERS.encode(), {}, "name", "the file names no template: give it a name"),
            (b"name: one\n" + TIERS.encode(), {"name": "two"}, "name", "the file names template 'one'"),
            (b"\xff\xfe", {"name": "x"}, "file", "the template file is not UTF-8"),
            (b"", {"name": "x"}, "file", "choose a template file (YAML) to import")):
        r = await upload(root, "/environment-templates/import", "t.yaml", content, **fields)
        assert r.code == 303 and r.location == "/environment-templates", (said, r.code, r.text[:500])
        page = await root.follow(r)
        assert said in (page.field_error("import", field) or ""), (said, page.text[:3000])
        assert '<details class="card" id="import" open>' in page.text
    assert await template_count(site) == 3


async def test_users_see_use_and_export_but_write_nothing_unless_allowed(site):
    await templates.save(site.ctx, site.actor("root"), "db-web", "shared one", yaml.safe_load(TIERS))
    alice = await site.as_user("alice")
    listed = unescape((await alice.get("/environment-templates")).text)
    assert "db-web" in listed and "shared one" in listed and "Administrators write them." in listed
    for absent in ('href="/environment-templates/new"', 'action="/environment-templates/import"', "/edit"):
        assert absent not in listed, absent
    assert 'href="/environment-templates/db-web/export"' in listed
    assert (await alice.get("/environment-templates/db-web/export")).code == 200
    for path in ("/environment-templates/new", "/environment-templates/db-web/edit"):
        r = await alice.get(path)
        assert r.code == 403 and "user_templates" in r.text, path
    r = await alice.post("/environment-templates/new", {"name": "mine", "description": "", "tiers": TIERS})
    assert r.code == 403
    r = await alice.post("/environment-templates/db-web/edit", {"description": "", "tiers": CYCLE})
    assert r.code == 403  # refused before what was sent is even looked at
    r = await upload(alice, "/environment-templates/import", "t.yaml", TIERS.encode(), name="mine")
    assert r.code == 403
    assert (await alice.get("/environment-templates/nosuch/export")).code == 404
    assert await template_count(site) == 1


async def test_with_user_templates_a_user_writes_private_ones(make_config, start_server, tmp_path, database_url):
    site = await open_site(make_config, start_server, tmp_path, {"h1": {"cpus": 8, "memory_mb": 16384}},
                           database_url, user_templates="true")
    await templates.save(site.ctx, site.actor("root"), "shared", "", yaml.safe_load(TIERS))
    alice = await site.as_user("alice")
    r = await alice.post("/environment-templates/new", {"name": "alice-lab", "description": "", "tiers": TIERS})
    assert r.code == 303, r.text[:800]
    listed = unescape((await alice.follow(r)).text)
    assert "private: alice" in listed and 'href="/environment-templates/alice-lab/edit"' in listed
    assert 'href="/environment-templates/shared/edit"' not in listed and "yours alone" in listed
    r = await alice.get("/environment-templates/shared/edit")
    assert r.code == 403 and "only administrators change shared ones" in r.text
    bob = await site.as_user("bob")
    for path in ("/environment-templates/alice-lab/edit", "/environment-templates/alice-lab/export"):
        assert (await bob.get(path)).code == 404, path
    page = await bob.refused("/environment-templates/new", {"name": "alice-lab", "description": "", "tiers": TIERS},
                             "/environment-templates/new")
    assert "taken by another user's template" in (page.field_error("template", "name") or "")
    owner = await site.ctx.db.run(
        lambda s: s.scalar(select(EnvTemplate.owner_id).where(EnvTemplate.name == "alice-lab")))
    assert owner == site.users["alice"]
    # An administrator's list shows everyone's, each editable.
    root = unescape((await (await site.as_user("root")).get("/environment-templates")).text)
    assert re.search(r'href="/environment-templates/alice-lab/edit"', root) and "private: alice" in root
