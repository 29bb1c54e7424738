"""The checkout page: the catalog, the placement preview, and checking out (or being told why not)."""

import json

from sqlalchemy import func, select

from fogmachine.db.models import Guest, Step


async def count_guests(site):
    return await site.ctx.db.run(lambda s: s.scalar(select(func.count()).select_from(Guest)))


async def test_catalog_with_sizes(site):
    c = await site.as_user("alice")
    r = await c.get("/checkout")
    assert r.code == 200
    for text in ("tiny", "a test-driver guest", "256 MiB", "huge", "Pick a profile"):
        assert text in r.text, text


async def test_preview_says_which_host_or_why_none(site):
    c = await site.as_user("alice")
    r = await c.get("/checkout?target=tiny")
    assert "would take it" in r.text and ('<strong>h1</strong>' in r.text or '<strong>h2</strong>' in r.text)
    r = await c.get("/checkout?target=huge")
    assert "would take it" not in r.text and 'data-state="no"' in r.text
    r = await c.get("/checkout?target=nothing")
    assert 'data-state="no"' in r.text and "unknown" in r.text


async def test_the_page_script_previews_through_the_api_with_the_session(site):
    """The script asks the API's placement preview with the page's session cookie alone (a GET: no XSRF
    token), and hears a refusal in the API's error shape with a 4xx, not a 200 that says it does not fit."""
    c = await site.as_user("alice")
    assert "/api/v1/catalog/placement?target=" in (await c.get("/static/app.js")).text
    assert "_xsrf" in c.cookies  # the page gave one; the preview must not need it
    cookie_only = {"Cookie": f"fm_session={c.cookies['fm_session']}"}
    r = await site.srv.fetch("/api/v1/catalog/placement?target=tiny", headers=cookie_only)
    answer = json.loads(r.body)
    assert r.code == 200 and answer["fits"] and answer["host"] in ("h1", "h2")
    r = await site.srv.fetch("/api/v1/catalog/placement?target=huge", headers=cookie_only)
    answer = json.loads(r.body)
    assert r.code == 200 and not answer["fits"] and answer["reason"]
    r = await site.srv.fetch("/api/v1/catalog/placement?target=nothing", headers=cookie_only)
    error = json.loads(r.body)["error"]
    assert r.code == 400 and error["details"]["field"] == "target" and "unknown" in error["message"]
    r = await site.srv.fetch("/api/v1/catalog/placement?target=tiny")
    assert r.code == 401 and json.loads(r.body)["error"]["code"] == "unauthenticated"
    assert (await c.get("/checkout/preview?target=tiny")).code == 404  # the page's own copy is gone


async def test_checkout_then_watch_it_on_my_reservations(site):
    c = await site.as_user("alice")
    r = await c.post("/checkout", {"name": "web1", "target": "tiny", "days": "3", "purpose": "a demo"})
    assert r.code == 303 and r.location == "/guests"
    page = await c.follow(r)
    assert ("ok", "web1 is on its way: watch it here as it is provisioned.") in page.flashes
    assert "web1" in page.text and "a demo" in page.text
    gid = await site.ctx.db.run(lambda s: s.scalar(select(Guest.id).where(Guest.name == "web1")))
    guest = await site.wait_for(gid, lambda g: g.step == Step.READY)
    assert guest.owner_id == site.users["alice"] and guest.purpose == "a demo"


async def test_a_refused_checkout_comes_back_under_its_field_once_and_makes_nothing(site):
    """It writes (a refusal is audited): on each database. Post, redirect, get for a refusal too: the page
    shows the message under the field at fault, focused, with everything typed; a reload is a clean form."""
    c = await site.as_user("alice")
    await site.guest("bob", "taken")
    before = await count_guests(site)
    cases = [
        ({"name": "Web 1", "target": "tiny", "days": "3", "purpose": "x"}, "name", "name must be a DNS label"),
        ({"name": "web1", "target": "tiny", "days": "99", "purpose": "x"}, "days", "days must be between 1 and 30"),
        ({"name": "web1", "target": "tiny", "days": "soon", "purpose": "x"}, "days", "days must be a whole number"),
        ({"name": "web1", "target": "tiny", "days": "3", "purpose": " "}, "purpose", "purpose is required"),
        ({"name": "web1", "target": "nothing", "days": "3", "purpose": "x"}, "target", "unknown"),
        ({"name": "taken", "target": "tiny", "days": "3", "purpose": "x"}, "name", "a guest named taken already"),
    ]
    for fields, field, message in cases:
        page = await c.refused("/checkout", fields, "/checkout")
        assert message in (page.field_error("checkout", field) or ""), (fields, page.text[:3000])
        assert page.marked("checkout", field), page.field(field)
        for name in ("name", "days", "purpose"):  # what was typed stays, the field at fault too
            assert page.field_value(name) == fields[name].strip(), name
        assert page.form_error("checkout") is None and not [f for f in page.flashes if f[0] == "error"]
        assert 'aria-invalid="true"' not in (await c.get("/checkout")).text  # shown once
    assert await count_guests(site) == before


async def test_no_room_is_said_at_the_top_of_the_form_with_the_choice_kept(site):
    """No host has room: not a mistake in one field (the same choice may fit later), so the message stands
    at the top of the form; the chosen profile stays chosen and its preview says why."""
    c = await site.as_user("alice")
    fields = {"name": "big1", "target": "huge", "days": "4", "purpose": "load test"}
    page = await c.refused("/checkout", fields, "/checkout")
    assert "999999" in (page.form_error("checkout") or ""), page.text[:3000]
    assert 'value="huge" checked' in page.text and 'data-state="no"' in page.text
    assert page.field_value("name") == "big1" and page.field_value("days") == "4"
    assert page.field_value("purpose") == "load test" and 'aria-invalid' not in page.text
    assert await count_guests(site) == 0
    assert (await c.get("/checkout")).form_error("checkout") is None


async def test_a_refused_checkout_too_long_for_the_cookie_is_shown_in_place(site):
    """A purpose of 880 Japanese characters (2,640 bytes; the service takes up to 2,000 characters) does not
    fit the cookie: the form is shown again in answer to the POST (its status kept), everything typed in it,
    and the page's own address for the history."""
    c = await site.as_user("alice")
    purpose = "テスト用の仮想マシン、" * 80
    r = await c.post("/checkout", {"name": "Web 1", "target": "tiny", "days": "3", "purpose": purpose})
    assert r.code == 400 and "fm_form" not in c.cookies
    assert r.field_value("purpose") == purpose.strip() and r.marked("checkout", "name")
    assert 'data-form-url="/checkout"' in r.text
    assert await count_guests(site) == 0


async def test_checkout_needs_login_and_xsrf(site):
    fields = {"name": "web1", "target": "tiny", "days": "3", "purpose": "x"}
    r = await site.client().post("/checkout", fields)
    assert r.code == 303 and r.location.startswith("/login")
    r = await site.client().get("/checkout")
    assert r.code == 303 and r.location == "/login?next=%2Fcheckout"
    c = await site.as_user("alice")
    assert (await c.post("/checkout", fields, xsrf=None)).code == 403
    assert await count_guests(site) == 0
