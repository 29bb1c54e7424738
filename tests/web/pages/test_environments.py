"""The environment pages through real HTTP on test-driver hosts, on SQLite, MariaDB and PostgreSQL.

The list, the checkout form (post, redirect, get; a refusal under its field, no room at the top naming the
tier), the environment's page with its tier ladder and the summary its script asks for, extend, start, stop
and delete (asked first), the guest page's line naming its environment; another user's environment is a 404.
"""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape
from typing import Any

from sqlalchemy import func, select

from fogmachine.db.models import Environment, Guest
from fogmachine.services.environments import templates
from tests.web.pages.conftest import Site

# The catalog's tiny entry has no phone-home: each tier is ready once its guests boot.
DB_WEB: dict[str, Any] = {"tiers": [
    {"name": "db", "target": "tiny"},
    {"name": "web", "target": "tiny", "count": 2, "anti_affinity": True, "variables": {"db_host": "{{ db.ip }}"}},
]}
NEW = {"template": "db-web", "name": "lab1", "days": "3", "purpose": "a lab", "keep_failed": ""}


async def shared_template(site: Site, name: str = "db-web", spec: dict[str, Any] | None = None) -> None:
    await templates.save(site.ctx, site.actor("root"), name, "a database, then two web servers", spec or DB_WEB)


async def counts(site: Site) -> tuple[int, int]:
    return await site.ctx.db.run(lambda s: (s.scalar(select(func.count()).select_from(Environment)),
                                            s.scalar(select(func.count()).select_from(Guest))))


async def env_step(site: Site, env_id: int, step: str, timeout: float = 60.0) -> None:
    """Wait (on the condition, generously: the machine may be busy) for the environment to reach ``step``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        now = await site.ctx.db.run(lambda s: s.get(Environment, env_id).step)
        if now == step:
            return
        assert asyncio.get_running_loop().time() < deadline, f"environment {env_id} stayed {now}, not {step}"
        await asyncio.sleep(0.05)


async def check_out(site: Site, client: Any, **fields: str) -> int:
    r = await client.post("/environments/new", {**NEW, **fields})
    assert r.code == 303 and re.fullmatch(r"/environments/\d+", r.location), (r.code, r.location, r.text[:800])
    return int(r.location.rsplit("/", 1)[1])


def section(text: str, section_id: str) -> str:
    start = text.index(f'id="{section_id}"')
    return text[start:text.index("</section>", start)]


async def test_check_out_from_the_form_and_follow_it_on_its_page(site):
    await shared_template(site)
    alice = await site.as_user("alice")
    r = await alice.get("/environments")
    assert r.code == 200 and "You have no environments." in r.text
    assert 'href="/environments" class="here" aria-current="page">Environments<' in r.text
    form = await alice.get("/environments/new")
    assert form.code == 200
    assert '<option value="db-web">db-web — 3 guests in 2 tiers</option>' in unescape(form.text)
    for part in ("a database, then two web servers", "<strong>db</strong>: 1 \u00d7 tiny",
                 "<strong>web</strong>: 2 \u00d7 tiny, on different hosts; variables db_host"):
        assert part in unescape(form.text), part
    assert '<option value="db-web" selected>' in (await alice.get("/environments/new?template=db-web")).text

    # The engine is held back (this process's turn for environment 1, the first in a new database), so the
    # page is seen on its way.
    env_id = 1
    async with site.ctx.environments.lock(env_id):
        r = await alice.post("/environments/new", NEW)
        assert r.code == 303 and r.location == f"/environments/{env_id}", (r.code, r.location, r.text[:800])
        page = await alice.follow(r)
        assert ("ok", "lab1 is on its way: its tiers start in order, each once the one before is ready.") in \
            page.flashes
        assert 'id="env-sentence" aria-live="polite">Provisioning tier 1 of 2 (db)<' in page.text
        assert 'data-following="yes"' in page.text
        assert re.findall(r'data-tier-state="(\d)">(\w+)<', page.text) == [("0", "waiting"), ("1", "waiting")]
        summary = json.loads((await alice.get(f"/environments/{env_id}/summary")).text)
        assert (summary["step"], summary["sentence"], summary["following"]) == (
            "provisioning", "Provisioning tier 1 of 2 (db)", True)
        assert [t["state"] for t in summary["tiers"]] == ["waiting", "waiting"]
    await env_step(site, env_id, "ready")

    page = await alice.get(f"/environments/{env_id}")
    text = unescape(page.text)
    assert "<h1>lab1</h1>" in text and ">Ready: all 2 tiers are ready<" in text and 'data-following="no"' in text
    facts = section(text, "env-facts")
    for part in ("db-web", "alice", "a lab", "Lease ends", " left)", "everything it made is deleted"):
        assert part in facts, part
    ladder = text[text.index('<ol class="ladder">'):]
    assert re.findall(r'id="tier-\d-title"><span class="tier-number" aria-hidden="true">(\d)</span> (\w+)</h3>',
                      ladder) == [("1", "db"), ("2", "web")]
    for part in ("1 \u00d7 tiny", "2 \u00d7 tiny", "on different hosts", "db_host"):
        assert part in ladder, part
    assert re.findall(r'data-tier-state="\d">(\w+)<', ladder) == ["ready", "ready"]
    guests = await site.ctx.db.run(lambda s: [(g.id, g.name) for g in s.scalars(
        select(Guest).where(Guest.environment_id == env_id).order_by(Guest.id))])
    assert [n for _, n in guests] == ["lab1-db1", "lab1-web1", "lab1-web2"]
    for gid, name in guests:  # the guest lists' own rows: live.js keeps them up to date, each links to its page
        assert f'<tr data-guest-id="{gid}" data-view="mine" class="guest-row">' in ladder
        assert f'<a href="/guests/{gid}" class="guest-link"><strong>{name}</strong></a>' in ladder
    assert f'data-guest-ids="{" ".join(str(g) for g, _ in guests)}"' in text
    summary = json.loads((await alice.get(f"/environments/{env_id}/summary")).text)
    assert (summary["step"], summary["following"], summary["reason"]) == ("ready", False, "")
    assert [(t["name"], t["state"]) for t in summary["tiers"]] == [("db", "ready"), ("web", "ready")]
    assert summary["expires_text"].endswith(" UTC") and summary["expires_at"]

    listed = unescape((await alice.get("/environments")).text)
    assert f'href="/environments/{env_id}"' in listed and "2 of 2 tiers ready" in listed and "db-web" in listed
    assert '<th scope="col">Owner</th>' not in listed
    root = unescape((await (await site.as_user("root")).get("/environments")).text)
    assert '<th scope="col">Owner</th>' in root and '<td data-label="Owner">alice</td>' in root

    # another user: nothing, and the same 404 as for no such environment
    bob = await site.as_user("bob")
    assert "You have no environments." in (await bob.get("/environments")).text
    for path in (f"/environments/{env_id}", f"/environments/{env_id}/summary", "/environments/999",
                 f"/environments/{env_id}/delete", "/environments/99999999999"):
        r = await bob.get(path)
        assert r.code == 404, (path, r.code)
    r = await bob.post(f"/environments/{env_id}/extend", {"days": "1"})
    assert r.code == 404
    r = await bob.post(f"/environments/{env_id}/stop", {})
    assert r.code == 404
    # nobody logged in: to the login page
    r = await site.client().get(f"/environments/{env_id}")
    assert r.code == 303 and r.location.startswith("/login?next=")


async def test_a_guest_page_says_which_environment_it_is_part_of(site):
    await shared_template(site)
    alice = await site.as_user("alice")
    env_id = await check_out(site, alice)
    await env_step(site, env_id, "ready")
    web2 = await site.ctx.db.run(lambda s: s.scalar(select(Guest.id).where(Guest.name == "lab1-web2")))
    page = unescape((await alice.get(f"/guests/{web2}")).text)
    assert (f'Part of environment <a href="/environments/{env_id}">lab1</a> (tier web)') in page
    alone = await site.guest("alice", "solo")
    assert "Part of environment" not in (await alice.get(f"/guests/{alone}")).text


async def test_a_refused_checkout_comes_back_under_its_field_and_makes_nothing(site):
    """Post, redirect, get: the message under the field at fault with what was typed; no room at the top of the
    form, naming the tier; a template the user may not use under the template."""
    await shared_template(site)
    await shared_template(site, "too-big", {"tiers": [{"name": "db", "target": "tiny"},
                                                      {"name": "giant", "target": "huge"}]})
    alice = await site.as_user("alice")
    cases = [
        ({"name": "Lab 1"}, "name", "name must be a DNS label"),
        ({"days": "99"}, "days", "days must be between 1 and 30"),
        ({"days": "soon"}, "days", "days must be a whole number"),
        ({"purpose": " "}, "purpose", "purpose is required"),
        ({"template": "nope"}, "template", "no environment template named 'nope'"),
        ({"template": ""}, "template", "template (an environment template's name) is required"),
    ]
    for fields, field, message in cases:
        page = await alice.refused("/environments/new", {**NEW, **fields}, "/environments/new")
        assert message in (page.field_error("new-environment", field) or ""), (fields, page.text[:3000])
        assert page.marked("new-environment", field)
        for name, value in {**NEW, **fields}.items():
            if name not in ("template", "keep_failed") and value.strip():
                assert page.field_value(name) == value, name
    page = await alice.refused("/environments/new", {**NEW, "template": "too-big", "keep_failed": "yes"},
                               "/environments/new")
    said = page.form_error("new-environment") or ""
    assert "tier giant cannot be placed" in said and "nothing of the environment was claimed" in said, said
    assert 'name="keep_failed" value="yes" checked' in page.text
    assert '<option value="too-big" selected>' in page.text
    assert await counts(site) == (0, 0)
    # A read of the form again is clean: the failure was shown once.
    again = await alice.get("/environments/new")
    assert again.form_error("new-environment") is None and "field-error" not in again.text
    # Without the form's XSRF token: refused before anything is looked at.
    r = await alice.post("/environments/new", NEW, xsrf=None)
    assert r.code == 403 and await counts(site) == (0, 0)


async def test_extend_stop_start_and_delete_from_its_page(site):
    await shared_template(site)
    alice = await site.as_user("alice")
    env_id = await check_out(site, alice, days="2")
    await env_step(site, env_id, "ready")
    here = f"/environments/{env_id}"

    before = await site.ctx.db.run(lambda s: s.get(Environment, env_id).expires_at)
    r = await alice.post(f"{here}/extend", {"days": "1", "back": here})
    assert r.code == 303 and r.location == here
    page = await alice.follow(r)
    assert any(kind == "ok" and text.startswith("lab1: extended by 1 day(s), now expires ")
               for kind, text in page.flashes), page.flashes
    after = await site.ctx.db.run(lambda s: (s.get(Environment, env_id).expires_at, sorted({
        g.expires_at for g in s.scalars(select(Guest).where(Guest.environment_id == env_id))})))
    assert (after[0] - before).days == 1 and after[1] == [after[0]]  # one lease for every guest
    page = await alice.refused(f"{here}/extend", {"days": "45", "back": here}, here)
    assert page.field_error(f"env-extend-{env_id}", "days") == "days must be between 1 and 30"
    typed = re.search(r'<input id="env-extend-days"[^>]*>', page.text).group(0)
    assert 'value="45"' in typed and 'aria-invalid="true"' in typed and "autofocus" in typed

    for action, said in (("stop", "lab1: asked to shut down, the last tier first."),
                         ("start", "lab1: started, the first tier first.")):
        r = await alice.post(f"{here}/{action}", {"back": here})
        assert r.code == 303 and r.location == here, (action, r.text[:500])
        assert ("ok", said) in (await alice.follow(r)).flashes

    # Delete asks first: a page of its own without script (or without confirm=yes).
    ask = await alice.get(f"{here}/delete")
    assert ask.code == 200 and "<h1>Delete lab1?</h1>" in ask.text and "every guest of it (3)" in ask.text
    r = await alice.post(f"{here}/delete", {})
    assert r.code == 200 and "<h1>Delete lab1?</h1>" in r.text
    assert await site.ctx.db.run(lambda s: s.get(Environment, env_id).step) == "ready"
    r = await alice.post(f"{here}/delete", {"confirm": "yes"})
    assert r.code == 303 and r.location == "/environments"
    listed = await alice.follow(r)
    assert ("ok", "lab1: deleted, with its 3 guests.") in listed.flashes and "You have no environments." in listed.text
    assert await site.ctx.db.run(lambda s: sorted({g.step for g in s.scalars(select(Guest))})) == ["retired"]
    page = unescape((await alice.get(here)).text)
    assert ">Retired: deleted by alice<" in page and 'id="env-actions"' not in page and "Retired</dt>" in page
    # Its record stays as history; a second delete is refused where it was pressed.
    r = await alice.post(f"{here}/delete", {"confirm": "yes"})
    assert r.code == 303 and r.location == here
    assert any(kind == "error" and "is retired" in text for kind, text in (await alice.follow(r)).flashes)
    r = await alice.post(f"{here}/extend", {"days": "1", "back": here})
    assert any(kind == "error" and "cannot be extended" in text for kind, text in (await alice.follow(r)).flashes)
