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


async def test_bad_checkouts_show_the_form_again_and_make_nothing(site):
    c = await site.as_user("alice")
    await site.guest("bob", "taken")
    before = await count_guests(site)
    cases = [
        ({"name": "Web 1", "target": "tiny", "days": "3", "purpose": "x"}, 400, "name must be a DNS label"),
        ({"name": "web1", "target": "tiny", "days": "99", "purpose": "x"}, 400, "days must be between 1 and 30"),
        ({"name": "web1", "target": "tiny", "days": "3", "purpose": ""}, 400, "purpose is required"),
        ({"name": "web1", "target": "nothing", "days": "3", "purpose": "x"}, 400, "unknown"),
        ({"name": "web1", "target": "huge", "days": "3", "purpose": "x"}, 409, "999999"),
        ({"name": "taken", "target": "tiny", "days": "3", "purpose": "x"}, 400, "a guest named taken already exists"),
    ]
    for fields, status, message in cases:
        r = await c.post("/checkout", fields)
        assert r.code == status, (fields, r.code)
        assert message in r.text, (fields, message)
        assert f'value="{fields["name"]}"' in r.text  # what was typed stays
    assert await count_guests(site) == before


async def test_checkout_needs_login_and_xsrf(site):
    fields = {"name": "web1", "target": "tiny", "days": "3", "purpose": "x"}
    r = await site.client().post("/checkout", fields)
    assert r.code == 303 and r.location.startswith("/login")
    r = await site.client().get("/checkout")
    assert r.code == 303 and r.location == "/login?next=%2Fcheckout"
    c = await site.as_user("alice")
    assert (await c.post("/checkout", fields, xsrf=None)).code == 403
    assert await count_guests(site) == 0
