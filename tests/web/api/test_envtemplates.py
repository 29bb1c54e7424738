"""/api/v1/environment-templates through the real server, on SQLite, MariaDB and PostgreSQL.

PUT creates or replaces whole (JSON or the YAML file), GET answers JSON or the
file, DELETE removes; administrators manage shared templates, users their own
private ones when ``user_templates`` allows; every bad variable is a 400 that
names its tier and variable. The README's recipe runs here as written.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from fogmachine.db.models import AuditEvent, EnvTemplate

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "samples" / "environments" / "db-web.yaml"
URL = "/api/v1/environment-templates"
DB_WEB: dict[str, Any] = {"description": "a db, then two web servers", "tiers": [
    {"name": "db", "target": "small"},
    {"name": "web", "target": "small", "count": 2, "anti_affinity": True, "variables": {"db_host": "{{ db.ip }}"}},
]}
YAML_HEADERS = {"Content-Type": "application/yaml"}


@pytest.fixture
def api_database_url(database_url: str) -> str:
    """These routes write: every test here runs on SQLite, MariaDB and PostgreSQL."""
    return database_url


def _count(session: Any) -> int:
    return session.scalar(select(func.count()).select_from(EnvTemplate))


def _audit(session: Any) -> list[str]:
    return [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.action.like("envtemplate.%"))
                                              .order_by(AuditEvent.id))]


def _with_variable(source: str) -> dict[str, Any]:
    return {"tiers": [{"name": "db", "target": "small"}, {"name": "web", "target": "small", "count": 2},
                      {"name": "app", "target": "small", "variables": {"ok": "{{ db.ip }}", "db_host": source}}]}


async def test_put_creates_then_replaces_and_get_answers_json_or_the_yaml_file(api: Any) -> None:
    r = await api.call("PUT", f"{URL}/db-web", as_="admin", body=DB_WEB)
    assert r.code == 200, r.body
    made = r.json
    assert made["name"] == "db-web" and made["shared"] and made["owner"] is None and made["guest_count"] == 3
    assert [t["name"] for t in made["tiers"]] == ["db", "web"]
    assert made["tiers"][1] == {"name": "web", "target": "small", "count": 2, "name_pattern": "{env}-{tier}{n}",
                                "anti_affinity": True, "variables": {"db_host": "{{ db.ip }}"}}
    again = await api.call("PUT", f"{URL}/db-web", as_="admin", body={**DB_WEB, "description": "changed"})
    assert again.code == 200 and again.json["id"] == made["id"] and again.json["description"] == "changed"
    # Everyone logged in sees a shared template.
    r = await api.call("GET", URL)
    assert r.code == 200 and r.json["total"] == 1 and r.json["templates"][0]["name"] == "db-web"
    r = await api.call("GET", f"{URL}/db-web")
    assert r.code == 200 and r.json["description"] == "changed" and r.headers["Content-Type"].startswith(
        "application/json")
    # As a file: by Accept or by ?format=yaml, the same text.
    by_accept = await api.call("GET", f"{URL}/db-web", headers={"Accept": "application/yaml"})
    by_query = await api.call("GET", f"{URL}/db-web?format=yaml")
    assert by_accept.code == by_query.code == 200 and by_accept.body == by_query.body
    assert by_accept.headers["Content-Type"].startswith("application/yaml")
    assert "Accept" in by_accept.headers["Vary"]
    document = yaml.safe_load(by_accept.body)
    assert document == {"name": "db-web", "description": "changed", "tiers": made["tiers"]}
    # JSON wins when it comes first in Accept.
    r = await api.call("GET", f"{URL}/db-web", headers={"Accept": "application/json, application/yaml"})
    assert r.json["name"] == "db-web"
    assert api.run(_count) == 1 and api.run(_audit) == ["envtemplate.save", "envtemplate.save"]


async def test_an_exported_file_imports_back_to_the_same_template(api: Any) -> None:
    r = await api.call("PUT", f"{URL}/db-web", as_="admin", raw=SAMPLE.read_bytes(), headers=YAML_HEADERS)
    assert r.code == 200, r.body
    imported = r.json
    assert imported["tiers"][1]["variables"]["db_host"] == "{{ db.ip }}" and imported["tiers"][1]["anti_affinity"]
    assert "\n" in imported["description"]
    exported = (await api.call("GET", f"{URL}/db-web?format=yaml")).body
    # Under another name, without the name in the file: the same template.
    without_name = re.sub(rb"^name: db-web\n", b"", exported, flags=re.M)
    assert without_name != exported
    r = await api.call("PUT", f"{URL}/db-web-copy", as_="admin", raw=without_name, headers=YAML_HEADERS)
    assert r.code == 200, r.body
    copied = r.json
    assert (copied["description"], copied["tiers"]) == (imported["description"], imported["tiers"])
    assert (await api.call("GET", f"{URL}/db-web-copy?format=yaml")).body == exported.replace(
        b"name: db-web\n", b"name: db-web-copy\n", 1)
    # Exported then put back as it is: nothing changes.
    r = await api.call("PUT", f"{URL}/db-web", as_="admin", raw=exported, headers=YAML_HEADERS)
    assert r.code == 200 and r.json["tiers"] == imported["tiers"]
    assert (await api.call("GET", f"{URL}/db-web?format=yaml")).body == exported


@pytest.mark.parametrize(("raw", "field", "words"), [
    (b"name: other\ntiers:\n  - name: db\n    target: small\n", "name", "the URL"),
    (b"tiers:\n  - name: db\n\ttarget: small\n  - name: web\n", "body", "not valid YAML: line 3"),
    (b"tiers:\n  - name: db\n    target: small\n    target: medium\n", "body", "line 4: the key 'target' is given "
     "twice"),
    (b"a: &x [1]\ntiers: *x\n", "body", "aliases"),
    (b"- just\n- a list\n", "body", "a mapping"),
    (b"colour: blue\ntiers: []\n", "colour", "unknown keys"),
    (b"description: x\n", "tiers", "required"),
    (b"tiers:\n  - name: db\n    target: small\n    colour: blue\n", "tiers[0].colour", "unknown field"),
    (b"tiers:\n  - name: db\n    target: small\n    variables:\n      port: 5432\n", "tiers[0].variables.port",
     "must be text"),
    (b"\xff\xfe", "body", "UTF-8"),
])
async def test_a_bad_yaml_file_is_a_400_that_says_where(api: Any, raw: bytes, field: str, words: str) -> None:
    r = await api.call("PUT", f"{URL}/db-web", as_="admin", raw=raw, headers=YAML_HEADERS)
    assert r.code == 400, r.body
    assert r.error["details"]["field"] == field and words in r.error["message"], r.error
    assert api.run(_count) == 0


@pytest.mark.parametrize(("source", "words"), [
    ("{{ app.ip }}", "its own tier app"),
    ("{{ cache.ip }}", "unknown tier or name 'cache'"),
    ("{{ db.port }}", "unknown attribute 'port'"),
    ("{{ db[1].ip }}", "db[1] is beyond tier db's 1 guest(s)"),
    ("{{ db.ip", "syntax error"),
    ("{{ ''.__class__.__mro__ }}", "reaches into Python's internals"),
    ("{{ cycler.__init__.__globals__ }}", "reaches into Python's internals"),
    ("{{ 'x' * 10**15 }}", "longer than 4096"),
    ("{{ 9**9**9 }}", "more than 64 bits"),
    ("{{ db.ip }}\n", None),  # a final newline is Jinja's to drop: fine
])
async def test_a_bad_variable_is_a_400_naming_its_tier_and_variable(api: Any, source: str, words: str | None) -> None:
    r = await api.call("PUT", f"{URL}/three", as_="admin", body=_with_variable(source))
    if words is None:
        assert r.code == 200, r.body
        return
    assert r.code == 400, r.body
    assert r.error["details"]["field"] == "tiers[2].variables.db_host"
    assert r.error["message"].startswith("tiers[2] (app), variable db_host: ") and words in r.error["message"]
    assert api.run(_count) == 0 and api.run(_audit) == []


async def test_later_tier_and_unknown_target_and_malformed_bodies(api: Any) -> None:
    later = {"tiers": [{"name": "db", "target": "small", "variables": {"web_ip": "{{ web.ip }}"}},
                       {"name": "web", "target": "small"}]}
    r = await api.call("PUT", f"{URL}/x", as_="admin", body=later)
    assert r.code == 400 and r.error["details"]["field"] == "tiers[0].variables.web_ip"
    assert "not before db" in r.error["message"] and "cycle" in r.error["message"]
    r = await api.call("PUT", f"{URL}/x", as_="admin", body={"tiers": [{"name": "db", "target": "small"},
                                                                         {"name": "web", "target": "nosuch"}]})
    assert r.code == 400 and r.error["details"]["field"] == "tiers[1].target" and "nosuch" in r.error["message"]
    r = await api.call("PUT", f"{URL}/x", as_="admin", body={"tiers": [{"name": "db", "target": "small",
                                                                         "colour": "blue"}]})
    assert r.code == 400 and r.error["details"]["field"] == "tiers[0].colour"
    r = await api.call("PUT", f"{URL}/x", as_="admin", body={**DB_WEB, "name": "y"})
    assert r.code == 400 and r.error["details"]["field"] == "name"
    r = await api.call("PUT", f"{URL}/x", as_="admin", raw=b"tiers: []", headers={"Content-Type": "text/plain"})
    assert r.code == 415 and "application/yaml" in r.error["message"]
    # A name that is no DNS label is no route at all.
    assert (await api.call("PUT", f"{URL}/Bad_Name", as_="admin", body=DB_WEB)).code == 404
    assert api.run(_count) == 0


async def test_users_only_read_unless_user_templates_is_on(api: Any) -> None:
    assert (await api.call("PUT", f"{URL}/db-web", as_="admin", body=DB_WEB)).code == 200
    r = await api.call("PUT", f"{URL}/mine", body=DB_WEB)
    assert r.code == 403 and "user_templates" in r.error["message"]
    assert (await api.call("DELETE", f"{URL}/db-web")).code == 403
    assert (await api.call("GET", f"{URL}/db-web")).code == 200
    assert (await api.call("GET", f"{URL}/db-web", as_=None)).code == 401
    assert api.run(_count) == 1


async def test_with_user_templates_a_private_template_is_its_owners_alone(make_api: Any) -> None:
    api = await make_api(user_templates="true")
    assert (await api.call("PUT", f"{URL}/shared", as_="admin", body=DB_WEB)).code == 200
    r = await api.call("PUT", f"{URL}/alice-lab", body=DB_WEB)
    assert r.code == 200 and r.json["owner"] == "alice" and not r.json["shared"]
    # Bob sees the shared one only; alice's answers 404, and its name is taken.
    r = await api.call("GET", URL, as_="bob")
    assert [t["name"] for t in r.json["templates"]] == ["shared"]
    assert (await api.call("GET", f"{URL}/alice-lab", as_="bob")).code == 404
    assert (await api.call("DELETE", f"{URL}/alice-lab", as_="bob")).code == 404
    assert (await api.call("PUT", f"{URL}/alice-lab", as_="bob", body=DB_WEB)).code == 409
    # Alice cannot change the shared one, nor write with a read-only token.
    assert (await api.call("PUT", f"{URL}/shared", body=DB_WEB)).code == 403
    assert (await api.call("PUT", f"{URL}/alice-lab", as_="alice-read", body=DB_WEB)).code == 403
    r = await api.call("GET", URL, as_="admin")
    assert {t["name"]: t["owner"] for t in r.json["templates"]} == {"alice-lab": "alice", "shared": None}
    assert (await api.call("DELETE", f"{URL}/alice-lab")).code == 204
    assert (await api.call("GET", f"{URL}/alice-lab")).code == 404
    assert api.run(_audit) == ["envtemplate.save", "envtemplate.save", "envtemplate.delete"]


async def test_delete_then_not_found(api: Any) -> None:
    assert (await api.call("PUT", f"{URL}/db-web", as_="admin", body=DB_WEB)).code == 200
    r = await api.call("DELETE", f"{URL}/db-web", as_="admin")
    assert r.code == 204 and not r.body
    assert (await api.call("GET", f"{URL}/db-web")).code == 404
    assert (await api.call("DELETE", f"{URL}/db-web", as_="admin")).code == 404


async def test_concurrent_puts_of_a_new_name_answer_200_or_409_and_make_one_template(api: Any) -> None:
    replies = await asyncio.gather(*(api.call("PUT", f"{URL}/race", as_="admin",
                                              body={**DB_WEB, "description": f"try {i}"}) for i in range(6)))
    assert {r.code for r in replies} <= {200, 409}, [(r.code, r.body) for r in replies]
    assert 200 in {r.code for r in replies}
    assert api.run(_count) == 1


def _recipe() -> str:
    """The README's environment-template lines, unindented."""
    text = (ROOT / "README").read_text()
    block = re.search(r"^ {4}# Environment templates.*?\n\n", text, re.S | re.M)
    assert block, "the README has no environment-template recipe"
    return "\n".join(line[4:] for line in block.group(0).splitlines())


async def test_the_readme_recipe_works_every_time(api: Any, tmp_path: Path) -> None:
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: the README's recipe needs it (apt-get install {tool})")
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    script = (f"set -e -o pipefail\nFM={api.srv.base_url}\nAUTH='Authorization: Bearer {api.tokens['admin']}'\n"
              + _recipe())
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec("bash", "-c", script, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, (out.decode(), err.decode())
        assert "tiers[1] (web), variable db_host" in out.decode(), out.decode()
    assert yaml.safe_load((tmp_path / "db-web.yaml").read_text())["name"] == "db-web"
    r = await api.call("GET", URL)
    assert [t["name"] for t in r.json["templates"]] == ["db-web"]
