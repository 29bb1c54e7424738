"""/api/v1/environments through the real server, on SQLite, MariaDB and PostgreSQL.

Check out (202 + Location), list, show the tiers, extend, delete (204, then 409); a template the user
may not use is a 404, a tier that does not fit a 409 naming it, another user's environment a 404.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from fogmachine.db.models import Environment, Guest

URL = "/api/v1/environments"
DB_WEB: dict[str, Any] = {"description": "a db, then two web servers", "tiers": [
    {"name": "db", "target": "small"},
    {"name": "web", "target": "small", "count": 2, "anti_affinity": True, "variables": {"db_host": "{{ db.ip }}"}},
]}


@pytest.fixture
def api_database_url(database_url: str) -> str:
    """These routes write: every test here runs on SQLite, MariaDB and PostgreSQL."""
    return database_url


async def _with_template(api: Any, body: dict[str, Any] | None = None) -> None:
    r = await api.call("PUT", "/api/v1/environment-templates/db-web", as_="admin", body=body or DB_WEB)
    assert r.code == 200, r.body


def _counts(session: Any) -> tuple[int, int]:
    return (session.scalar(select(func.count()).select_from(Environment)),
            session.scalar(select(func.count()).select_from(Guest).where(Guest.managed.is_(True))))


async def _until(api: Any, path: str, step: str) -> dict[str, Any]:
    for _ in range(600):
        r = await api.call("GET", path)
        if r.json["step"] == step:
            return r.json  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never reached {step}: {r.json}")


async def test_check_out_show_extend_and_delete_an_environment(api: Any) -> None:
    await _with_template(api)
    r = await api.call("POST", URL, body={"template": "db-web", "name": "lab1", "days": 2, "purpose": "api test"})
    assert r.code == 202, r.body
    env = r.json
    assert r.headers["Location"] == f"{URL}/{env['id']}"
    assert (env["name"], env["owner"], env["template"], env["step"], env["keep_failed"]) == (
        "lab1", "alice", "db-web", "provisioning", False)
    assert [(t["name"], t["count"], t["anti_affinity"], t["variables"]) for t in env["tiers"]] == [
        ("db", 1, False, []), ("web", 2, True, ["db_host"])]
    assert [g["name"] for t in env["tiers"] for g in t["guests"]] == ["lab1-db1", "lab1-web1", "lab1-web2"]
    hosts = [g["host"] for g in env["tiers"][1]["guests"]]
    assert len(set(hosts)) == 2  # anti-affinity over h1 and h2
    ready = await _until(api, f"{URL}/{env['id']}", "ready")  # small: no phone-home, each tier ready at boot
    assert [t["state"] for t in ready["tiers"]] == ["ready", "ready"]

    listed = await api.call("GET", URL)
    assert listed.code == 200 and [e["name"] for e in listed.json["environments"]] == ["lab1"]
    assert (await api.call("GET", URL, as_="bob")).json["environments"] == []
    assert (await api.call("GET", f"{URL}/{env['id']}", as_="bob")).code == 404

    extended = await api.call("POST", f"{URL}/{env['id']}/extend", body={"days": 3})
    assert extended.code == 200, extended.body
    assert extended.json["expires_at"] > env["expires_at"]
    bad = await api.call("POST", f"{URL}/{env['id']}/extend", body={"days": 0})
    assert bad.code == 400 and bad.error["details"]["field"] == "days"

    stopped = await api.call("POST", f"{URL}/{env['id']}/stop")
    assert stopped.code == 200, stopped.body

    gone = await api.call("DELETE", f"{URL}/{env['id']}")
    assert gone.code == 204, gone.body
    shown = (await api.call("GET", f"{URL}/{env['id']}")).json
    assert shown["step"] == "retired" and {g["step"] for t in shown["tiers"] for g in t["guests"]} == {"retired"}
    again = await api.call("DELETE", f"{URL}/{env['id']}")
    assert again.code == 409
    assert (await api.call("GET", URL)).json["environments"] == []
    assert len((await api.call("GET", f"{URL}?include_retired=true")).json["environments"]) == 1


async def test_refusals_leave_nothing_made(api: Any) -> None:
    r = await api.call("POST", URL, body={"template": "nope", "name": "lab1", "days": 1, "purpose": "x"})
    assert r.code == 404 and "nope" in r.error["message"]
    await _with_template(api, {"tiers": [{"name": "db", "target": "small"},
                                         {"name": "web", "target": "small", "count": 3, "anti_affinity": True}]})
    r = await api.call("POST", URL, body={"template": "db-web", "name": "lab1", "days": 1, "purpose": "x"})
    assert r.code == 409 and r.error["details"]["tier"] == "web", r.body
    assert "tier web" in r.error["message"]
    r = await api.call("POST", URL, body={"template": "db-web", "name": "Lab 1", "days": 1, "purpose": "x"})
    assert r.code == 400 and r.error["details"]["field"] == "name"
    r = await api.call("POST", URL, body={"template": "db-web", "name": "lab1", "days": 1, "purpose": "x",
                                          "colour": "blue"})
    assert r.code == 400
    r = await api.call("POST", URL, as_="alice-read", body={"template": "db-web", "name": "lab1", "days": 1,
                                                            "purpose": "x"})
    assert r.code == 403
    assert api.run(_counts) == (0, 0)
